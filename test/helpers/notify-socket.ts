// A real systemd-style notify socket for tests: a unix datagram socket (node has none, so a
// small python3 child binds it) that records every datagram with the sender's pid from
// SCM_CREDENTIALS, as systemd does for NotifyAccess=main. Point a child process's NOTIFY_SOCKET
// at `path` and read `messages`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

export interface NotifyMessage {
  /** The sending process, from the kernel (SO_PASSCRED), not from the message. */
  pid: number
  /** Milliseconds since the listener started (performance.now of this process). */
  at: number
  /** The assignments of one datagram, e.g. { READY: '1', STATUS: 'up' }. */
  fields: Record<string, string>
  raw: string
}

export interface NotifySocket {
  path: string
  messages: NotifyMessage[]
  /** Resolves with the first message (already received or later) that matches; rejects after timeoutMs. */
  waitFor (match: (m: NotifyMessage) => boolean, timeoutMs?: number, what?: string): Promise<NotifyMessage>
  close (): Promise<void>
}

const LISTENER = String.raw`
import json, os, socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
print(json.dumps({"listening": path}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = -1
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    print(json.dumps({"pid": pid, "data": data.decode("utf-8", "replace")}), flush=True)
`

/** Why a notify socket cannot be made here, or null when it can (python3 is needed). */
export function notifySocketUnavailable (): string | null {
  const r = spawnSync('python3', ['-c', 'import socket; socket.SCM_CREDENTIALS'], { encoding: 'utf8' })
  if (r.error) return `python3 is not available (${r.error.message})`
  if (r.status !== 0) return `python3 cannot do SCM_CREDENTIALS: ${r.stderr.trim()}`
  return null
}

export async function openNotifySocket (): Promise<NotifySocket> {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-notify-'))
  const path = join(dir, 'notify.sock')
  const child: ChildProcess = spawn('python3', ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] })
  const messages: NotifyMessage[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })

  const listening = new Promise<void>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`notify listener exited (${code}): ${stderr}`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { listening?: string, pid?: number, data?: string }
      if (parsed.listening) return resolve()
      const raw = parsed.data ?? ''
      const fields: Record<string, string> = {}
      for (const assignment of raw.split('\n')) {
        const eq = assignment.indexOf('=')
        if (eq > 0) fields[assignment.slice(0, eq)] = assignment.slice(eq + 1)
      }
      messages.push({ pid: parsed.pid ?? -1, at: performance.now(), fields, raw })
      for (const wake of waiters) wake()
    })
  })
  await listening

  return {
    path,
    messages,
    waitFor (match, timeoutMs = 5000, what = 'a matching notify message') {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = messages.find(match)
          if (!found) return false
          cleanup()
          resolve(found)
          return true
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got: ${JSON.stringify(messages.map((m) => m.raw))}`))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(wake)
        }
        const wake = () => { check() }
        if (!check()) waiters.add(wake)
      })
    },
    async close () {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
