// The service process as systemd runs it: a failed start exits non-zero on its own (not hang, not
// exit 0), and SIGTERM stops it with exit code 0. How long either takes is only reported.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { notifySocketUnavailable, openNotifySocket } from './helpers/notify-socket.ts'
import { scratchDir } from './helpers/scratch.ts'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

/** Children whose output pipes are read to the end ('close': 'exit' can come before the last lines). */
const closedChildren = new WeakSet<ChildProcess>()

function startService (t: Test, port: number, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'serve'], {
    cwd: fileURLToPath(new URL('..', import.meta.url)), // config.yaml there: libvirt's test driver
    env: { ...process.env, KVW_API_HOST: '127.0.0.1', KVW_API_PORT: String(port), KVW_DATA_DIR: scratchDir(t), NOTIFY_SOCKET: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  child.once('close', () => closedChildren.add(child))
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  /** Waits until the output matches `what` (or the child ends, or HANG_MS passes), then asserts it. */
  const waitForOutput = async (what: RegExp): Promise<void> => {
    for (const until = Date.now() + HANG_MS; !what.test(out) && Date.now() < until && !closedChildren.has(child);) await new Promise((resolve) => setTimeout(resolve, 20))
    t.match(out, what)
  }
  return { child, output: () => out, waitForOutput }
}

/** startService on a free port with a config file of the test's own (KVW_CONFIG), for the test to rewrite before a SIGHUP. */
async function startOnConfigFile (t: Test, yaml: string) {
  const configFile = join(scratchDir(t), 'config.yaml')
  writeFileSync(configFile, yaml)
  const port = await freePort()
  return { configFile, port, ...startService(t, port, { KVW_CONFIG: configFile }) }
}

/** Only a hang detector: a start or stop that takes this long is stuck, not slow. */
const HANG_MS = 60_000

/** The child's exit code and signal; SIGKILLed (signal 'SIGKILL') if it has not exited after hangMs. */
async function exitOrKill (child: ChildProcess, hangMs: number): Promise<[number | null, NodeJS.Signals | null]> {
  const timer = setTimeout(() => child.kill('SIGKILL'), hangMs)
  try {
    // 'close', not 'exit': then output() holds every line the child wrote before it ended. A
    // grandchild still holding the pipes (tsx's esbuild) gets 5 s after the exit, then they are cut.
    if (!closedChildren.has(child)) {
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
      const cut = setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy() }, 5000)
      if (!closedChildren.has(child)) await once(child, 'close')
      clearTimeout(cut)
    }
    return [child.exitCode, child.signalCode]
  } finally {
    clearTimeout(timer)
  }
}

async function freePort (): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

t.test('a port already taken: "cannot start", exit 69 before any watchdog or file', async (t) => {
  const blocker = createServer().listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as AddressInfo
  const started = Date.now()
  const dataDir = scratchDir(t)
  const { child, output } = startService(t, port, { KVW_DATA_DIR: dataDir })
  // A service that hung instead of exiting would run into the hang detector (killed: code null).
  const [code, signal] = await exitOrKill(child, HANG_MS)
  t.equal(signal, null, 'exited on its own, not killed by the hang detector')
  t.equal(code, 69, output())
  t.match(output(), new RegExp(`cannot start: 127\\.0\\.0\\.1:${port} is already in use`))
  t.notMatch(output(), /watchdog started|snapshot| {4}at /, 'no watchdog, no snapshot, no stack trace')
  t.same(readdirSync(dataDir), [], 'nothing written to the data directory (the lock is released)')
  t.comment(`exited after ${Date.now() - started} ms`)
})

t.test('a second instance on the same data directory (another port) exits 73 naming the first', async (t) => {
  const dataDir = scratchDir(t)
  const first = startService(t, await freePort(), { KVW_DATA_DIR: dataDir })
  for (const until = Date.now() + HANG_MS; !/Server listening/.test(first.output()) && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50))
  for (const until = Date.now() + HANG_MS; !existsSync(join(dataDir, 'state', 'test.json')) && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50))
  const stateBefore = readFileSync(join(dataDir, 'state', 'test.json'), 'utf8')
  const second = startService(t, await freePort(), { KVW_DATA_DIR: dataDir })
  const [code, signal] = await exitOrKill(second.child, HANG_MS)
  t.equal(signal, null)
  t.equal(code, 73, second.output())
  t.match(second.output(), new RegExp(`another kiosk-vm-watchdog \\(PID ${first.child.pid}\\) already uses this data directory`))
  t.notMatch(second.output(), /watchdog started| {4}at /, 'no watchdog started, no stack trace')
  t.equal(readFileSync(join(dataDir, 'state', 'test.json'), 'utf8'), stateBefore, 'the first one\'s state is untouched')
  t.equal(first.child.exitCode, null, 'the first one runs on')
  first.child.kill('SIGTERM')
  t.same(await exitOrKill(first.child, HANG_MS), [0, null])
  t.notOk(readdirSync(dataDir).includes('kiosk-vm-watchdog.lock'), 'a clean stop removes the lock')
})

t.test('a lock left by a process that died (kill -9) does not block the next start', async (t) => {
  const dataDir = scratchDir(t)
  const dead = spawn(process.execPath, ['-e', '0'])
  await once(dead, 'exit')
  writeFileSync(join(dataDir, 'kiosk-vm-watchdog.lock'), `${dead.pid} 12345\n`)
  const { child, waitForOutput } = startService(t, await freePort(), { KVW_DATA_DIR: dataDir })
  await waitForOutput(/Server listening/)
  t.match(readFileSync(join(dataDir, 'kiosk-vm-watchdog.lock'), 'utf8'), new RegExp(`^${child.pid} `), 'the lock is now the new process\'s')
  child.kill('SIGTERM')
  t.same(await exitOrKill(child, HANG_MS), [0, null])
})

t.test('SIGTERM: exit 0 promptly (the VM is left as it is)', async (t) => {
  const port = await freePort()
  const { child, output, waitForOutput } = startService(t, port)
  await waitForOutput(/Server listening/)
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/status`)
  t.equal(res.status, 200)
  const stopAt = Date.now()
  child.kill('SIGTERM')
  const [code, signal] = await exitOrKill(child, HANG_MS)
  t.equal(signal, null, 'exited on its own after SIGTERM, not killed by the hang detector')
  t.equal(code, 0, output())
  t.comment(`stopped ${Date.now() - stopAt} ms after SIGTERM`)
  t.match(output(), /stopping; the VM is left as it is/)
})

t.test('under a real notify socket: READY=1 once listening with libvirt connected, then WATCHDOG=1 pings', { skip: notifySocketUnavailable() ?? false }, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const port = await freePort()
  const { child, output } = startService(t, port, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '400000' })
  const ready = await sock.waitFor((m) => m.fields['READY'] === '1', HANG_MS, 'READY=1')
  t.match(ready.fields['STATUS'], new RegExp(`listening on 127\\.0\\.0\\.1:${port}; libvirt test:///default connected`))
  t.equal(ready.pid, child.pid, 'from the main process (NotifyAccess=main)')
  // Pings keep coming (their period, half of WatchdogSec, is test/systemd/notify.test.ts's to check).
  const readyIndex = sock.messages.indexOf(ready)
  const pingsAfterReady = () => sock.messages.slice(readyIndex + 1).filter((m) => m.fields['WATCHDOG'] === '1')
  await sock.waitFor(() => pingsAfterReady().length >= 3, HANG_MS, 'three WATCHDOG=1 pings after READY=1')
  t.ok(pingsAfterReady().every((m) => m.pid === child.pid), 'pings from the main process')
  const pings = pingsAfterReady()
  t.comment(`first 3 pings ${Math.round(pings[0]!.at - ready.at)}, ${Math.round(pings[1]!.at - ready.at)}, ${Math.round(pings[2]!.at - ready.at)} ms after READY (WatchdogSec 400 ms)`)
  child.kill('SIGTERM')
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  const [code, signal] = await exitOrKill(child, HANG_MS)
  t.equal(signal, null, 'exited on its own after SIGTERM')
  t.equal(code, 0, output())
})

t.test('a SIGHUP while the service is still starting does not end it: the reload runs once it listens', async (t) => {
  const { configFile, child, output, waitForOutput } = await startOnConfigFile(t, 'log_level: info\nmaintenance_minutes: 30\n')
  await waitForOutput(/"msg":"starting"/)
  writeFileSync(configFile, 'log_level: info\nmaintenance_minutes: 45\n')
  child.kill('SIGHUP')
  await waitForOutput(/SIGHUP while starting: the config is read again once the service listens/)
  await waitForOutput(/config reloaded: maintenance_minutes changed/)
  t.match(output(), /Server listening/)
  t.equal(child.exitCode, null, 'still running')
  t.equal(child.signalCode, null, 'not ended by the signal')
})

t.test('SIGHUP reloads the config (in place what can, the rest named); SIGUSR1 does nothing; one msg per line', async (t) => {
  const { configFile, port, child, output, waitForOutput } = await startOnConfigFile(t, 'log_level: info\nmaintenance_minutes: 30\n')
  await waitForOutput(/Server listening/)

  writeFileSync(configFile, 'log_level: debug\nmaintenance_minutes: 45\nheartbeat_timeout: 20\n')
  child.kill('SIGHUP')
  await waitForOutput(/config reloaded: (log_level, maintenance_minutes|maintenance_minutes, log_level) changed/)
  // The next line, written after it: on a busy machine it can reach the pipe a moment later (load14).
  await waitForOutput(/these settings change only with a restart \(systemctl restart kiosk-vm-watchdog\): heartbeat_timeout/)
  t.equal(child.exitCode, null, 'still running after SIGHUP')
  const disable = await fetch(`http://127.0.0.1:${port}/api/v1/revert/disable`, { method: 'POST' })
  t.equal(disable.status, 200)
  const minutes = (Date.parse((await disable.json() as { details: { until: string } }).details.until) - Date.now()) / 60_000
  t.ok(minutes > 43 && minutes <= 45, `maintenance_minutes 45 applies without a restart (${minutes.toFixed(1)} min)`)
  t.notMatch(output(), /"level":20.*libvirt lifecycle event/, 'debug lines were off before the reload')
  t.equal((await fetch(`http://127.0.0.1:${port}/api/v1/revert?reason=reload_test`, { method: 'POST' })).status, 202)
  await waitForOutput(/"level":20,[^\n]*"vm":"test"[^\n]*libvirt lifecycle event/) // log_level debug now reaches the watchdog's own logger too

  writeFileSync(configFile, 'heartbeat_timeout: 1e13\n')
  child.kill('SIGHUP')
  await waitForOutput(/reload refused: the config is not valid \(heartbeat_timeout: at most 86400 s \(got 10000000000000\)\); the running config stays/)
  t.equal(child.exitCode, null, 'an invalid file on SIGHUP does not stop the service')

  child.kill('SIGUSR1')
  await waitForOutput(/SIGUSR1 ignored/)
  t.notMatch(output(), /Debugger listening/, 'no inspector')
  const inspector = await new Promise<string>((resolve) => {
    const socket = connect(9229, '127.0.0.1', () => { socket.destroy(); resolve('open') })
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  t.equal(inspector, 'ECONNREFUSED', 'nothing listens on the inspector port')

  t.equal((await fetch(`http://127.0.0.1:${port}/api/v1/revert/disable?minutes=-1`, { method: 'POST' })).status, 400)
  await waitForOutput(/request refused/)
  const refusal = output().split('\n').find((line) => line.includes('"request refused"'))!
  t.equal(refusal.match(/"msg":/g)?.length, 1, 'one msg key per line')
  t.match(JSON.parse(refusal), { msg: 'request refused', code: 'BAD_REQUEST', reason: /minutes/ }, 'the reason under its own key')

  child.kill('SIGTERM')
  t.same(await exitOrKill(child, HANG_MS), [0, null])
})
