// The real host for the doctor: programs run without a shell and with a timeout, sockets only
// on the given address (binding is a local probe) or on loopback.
import { execFile } from 'node:child_process'
import { statfs } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import type { CommandResult, Host } from './types.ts'

export function runCommand (command: string, args: string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err === null) return resolve({ code: 0, stdout, stderr })
      const e = err as NodeJS.ErrnoException & { killed?: boolean, code?: number | string }
      if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr })
      if (e.killed) return resolve({ code: null, stdout, stderr, error: 'timeout' })
      resolve({ code: null, stdout, stderr, error: typeof e.code === 'string' ? e.code : e.message })
    })
  })
}

export function tryBind (host: string, port: number): Promise<'free' | 'in_use' | string> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' ? 'in_use' : (err.code ?? err.message)))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve('free')))
  })
}

export function httpGetLoopback (port: number, path: string, timeoutMs: number): Promise<{ status: number, body: string } | null> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { if (body.length < 65536) body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', () => resolve(null))
    })
    req.on('timeout', () => { req.destroy(); resolve(null) })
    req.on('error', () => resolve(null))
    req.end()
  })
}

export function realHost (): Host {
  return {
    run: runCommand,
    user: () => {
      const u = userInfo()
      return { username: u.username, uid: u.uid, gid: u.gid }
    },
    processGroups: () => [...new Set([...(process.getgroups?.() ?? []), process.getgid?.() ?? -1])].filter((g) => g >= 0),
    freeBytes: async (path) => {
      const s = await statfs(path)
      return Number(s.bavail) * Number(s.bsize)
    },
    tryBind,
    httpGetLoopback,
    paths: {
      kvm: '/dev/kvm',
      groupFile: '/etc/group',
      libvirtNetworks: '/etc/libvirt/qemu/networks',
      systemdRunDir: '/run/systemd/system',
      serviceStateDir: '/var/lib/kiosk-vm-watchdog'
    }
  }
}
