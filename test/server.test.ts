// The service process as systemd runs it: a failed start exits non-zero at once (not hang, not
// exit 0), and SIGTERM stops it promptly with exit code 0.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { notifySocketUnavailable, openNotifySocket } from './helpers/notify-socket.ts'
import { scratchDir } from './helpers/scratch.ts'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

function startService (t: Test, port: number, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'serve'], {
    cwd: fileURLToPath(new URL('..', import.meta.url)), // config.yaml there: libvirt's test driver
    env: { ...process.env, KVW_API_HOST: '127.0.0.1', KVW_API_PORT: String(port), KVW_DATA_DIR: scratchDir(t), NOTIFY_SOCKET: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  return { child, output: () => out }
}

async function freePort (): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

t.test('a port already taken: "cannot start", exit 1 within seconds', async (t) => {
  const blocker = createServer().listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as AddressInfo
  const started = Date.now()
  const { child, output } = startService(t, port)
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 1, output())
  t.match(output(), /cannot start/)
  t.match(output(), /EADDRINUSE/)
  t.ok(Date.now() - started < 15_000, 'did not hang')
})

t.test('SIGTERM: exit 0 promptly (the VM is left as it is)', async (t) => {
  const port = await freePort()
  const { child, output } = startService(t, port)
  for (let i = 0; i < 200 && !/Server listening/.test(output()); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(output(), /Server listening/)
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/status`)
  t.equal(res.status, 200)
  const stopAt = Date.now()
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, output())
  t.ok(Date.now() - stopAt < 5000, `stopped in ${Date.now() - stopAt} ms`)
  t.match(output(), /stopping; the VM is left as it is/)
})

t.test('under a real notify socket: READY=1 once listening with libvirt connected, then WATCHDOG=1 pings', { skip: notifySocketUnavailable() ?? false }, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const port = await freePort()
  const { child, output } = startService(t, port, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '400000' })
  const ready = await sock.waitFor((m) => m.fields['READY'] === '1', 15_000, 'READY=1')
  t.match(ready.fields['STATUS'], new RegExp(`listening on 127\\.0\\.0\\.1:${port}; libvirt test:///default connected`))
  t.equal(ready.pid, child.pid, 'from the main process (NotifyAccess=main)')
  const readyAt = ready.at
  await sock.waitFor((m) => m.fields['WATCHDOG'] === '1' && m.at > readyAt + 1000, 5000, 'pings a second after READY')
  const pings = sock.messages.filter((m) => m.fields['WATCHDOG'] === '1')
  t.ok(pings.length >= 4, `pinged every ~200 ms (half of WatchdogSec): ${pings.length} pings`)
  child.kill('SIGTERM')
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 5000, 'STOPPING=1')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, output())
})
