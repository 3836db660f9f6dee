// The notifier in a child process against a real unix datagram socket standing in for systemd's
// NOTIFY_SOCKET: what systemd would receive, from which pid, and when pings stop. The ping
// schedule is counted in this process on a fake clock (real socket); the child runs assert order only.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openNotifySocket, notifySocketUnavailable, type NotifyMessage } from '../helpers/notify-socket.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import { createNotifier } from '../../src/systemd/notify.ts'

/** Only turns a hang into a failure naming what was awaited; nothing here comes near it. */
const HANG_MS = 60_000

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CHILD = fileURLToPath(new URL('./fixtures/notifier-child.ts', import.meta.url))

interface ChildRun {
  code: number | null
  pid: number
  summary: { pid: number, enabled: boolean, watchdogIntervalMs: number | null }
  logs: Array<{ level: string, msg: string }>
}

async function runChild (plan: object, env: Record<string, string | undefined>): Promise<ChildRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env }
  for (const key of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete childEnv[key]
  for (const [key, value] of Object.entries(env)) if (value !== undefined) childEnv[key] = value
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(plan)], { cwd: ROOT, env: childEnv })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  const lines = stderr.split('\n').filter((l) => l.startsWith('{'))
  if (code !== 0 || stdout.trim() === '') throw new Error(`child failed (${code}): ${stderr}`)
  return { code, pid: child.pid!, summary: JSON.parse(stdout), logs: lines.map((l) => JSON.parse(l)) }
}

const pings = (messages: NotifyMessage[]) => messages.filter((m) => m.fields['WATCHDOG'] === '1')

const unavailable = notifySocketUnavailable()
const needsSocket = unavailable ? { skip: `a notify socket needs python3: ${unavailable}` } : {}

const T0 = Date.parse('2026-01-01T00:00:00.000Z')

/**
 * A notifier in this process against the socket, on a fake clock: libsystemd reads NOTIFY_SOCKET
 * and WATCHDOG_USEC at call time, so they are set here for the test and restored after it.
 */
function inProcessNotifier (t: Test, socketPath: string, clock: FakeClock) {
  const saved = { NOTIFY_SOCKET: process.env['NOTIFY_SOCKET'], WATCHDOG_USEC: process.env['WATCHDOG_USEC'], WATCHDOG_PID: process.env['WATCHDOG_PID'] }
  process.env['NOTIFY_SOCKET'] = socketPath
  process.env['WATCHDOG_USEC'] = '200000'
  delete process.env['WATCHDOG_PID']
  t.teardown(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })
  const logs: Array<{ level: string, obj: Record<string, unknown>, msg: string }> = []
  const line = (level: string) => (obj: object, msg: string) => { logs.push({ level, obj: obj as Record<string, unknown>, msg }) }
  const notifier = createNotifier({ debug: line('debug'), warn: line('warn') }, { timers: clock, clock })
  return { notifier, logs }
}

t.test('READY=1, STATUS, watchdog pings, STOPPING=1, all from the main pid', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 1000, status: 'libvirt connected' }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')

  t.same(run.summary, { pid: run.pid, enabled: true, watchdogIntervalMs: 200 })
  const first = sock.messages[0]!
  t.same(first.fields, { READY: '1', STATUS: 'listening on 127.0.0.1:8000' }, 'READY=1 comes first, with its status line')
  t.ok(sock.messages.some((m) => m.raw === 'STATUS=libvirt connected'), 'status() sends STATUS=')
  t.equal(sock.messages.at(-1)!.raw, 'STOPPING=1', 'STOPPING=1 comes last')
  t.ok(sock.messages.every((m) => m.pid === run.pid), 'every datagram comes from the child itself (NotifyAccess=main)')
  // The first ping is due at once, before the run's end: at least one whatever the load. Their
  // period is counted on a fake clock below.
  t.ok(pings(sock.messages).length > 0, `pings between READY and STOPPING (${pings(sock.messages).length})`)
})

t.test('pings every half WATCHDOG_USEC, the first at once (fake clock, real socket)', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const clock = new FakeClock(T0)
  const { notifier } = inProcessNotifier(t, sock.path, clock)
  t.equal(notifier.watchdogIntervalMs(), 200)
  const stop = notifier.startWatchdog(() => true)
  clock.advance(0)
  // A STATUS marker 1 ms before each due ping: in order on the socket, the pings fall between them.
  const expected = ['WATCHDOG=1']
  for (let i = 1; i <= 10; i++) {
    clock.advance(99)
    notifier.status(`+${i * 100 - 1} ms`)
    clock.advance(1)
    expected.push(`STATUS=+${i * 100 - 1} ms`, 'WATCHDOG=1')
  }
  stop()
  t.equal(clock.pending, 0, 'stop() clears the ping timer')
  clock.advance(1000)
  notifier.stopping()
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  t.same(sock.messages.map((m) => m.raw), [...expected, 'STOPPING=1'], 'one ping every 100 ms, none after stop()')
  t.ok(sock.messages.every((m) => m.pid === process.pid))
})

t.test('a blocked event loop stops the pings; they resume when it runs again, without a burst', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  await runChild({ runMs: 0, hangAtMs: 500, hangMs: 1000 }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  // Placed by order, not by time: the child marks the block's start and end, and half a period after it.
  const raws = sock.messages.map((m) => m.raw)
  const at = (raw: string) => raws.indexOf(raw)
  const pingsBetween = (from: number, to: number) => raws.slice(from + 1, to).filter((r) => r === 'WATCHDOG=1').length
  t.ok(at('STATUS=hang-start') > 0 && at('STATUS=hang-end') > at('STATUS=hang-start') && at('STATUS=mark') > at('STATUS=hang-end'), 'markers in order')
  t.ok(pingsBetween(0, at('STATUS=hang-start')) > 0, 'pings before the block')
  t.equal(pingsBetween(at('STATUS=hang-start'), at('STATUS=hang-end')), 0, 'no ping while the loop is blocked (systemd would restart after 200 ms): they come from the loop, not a thread')
  t.equal(pingsBetween(at('STATUS=hang-end'), at('STATUS=mark')), 1, 'one overdue ping when the loop runs again, no burst of catch-up pings')
  t.ok(pingsBetween(at('STATUS=mark'), at('STOPPING=1')) > 0, 'then pings keep coming')
})

t.test('an unhealthy service withholds its pings and says so (fake clock, real socket)', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const clock = new FakeClock(T0)
  const { notifier, logs } = inProcessNotifier(t, sock.path, clock)
  // Unhealthy from 400 ms to 1100 ms: ticks at 0..300 ping, 400..1000 do not, 1100..1500 do.
  const stop = notifier.startWatchdog(() => !(clock.now() - T0 >= 400 && clock.now() - T0 < 1100))
  clock.advance(1500)
  stop()
  notifier.stopping()
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  t.equal(pings(sock.messages).length, 4 + 5, '4 pings before, none during the 700 ms unhealthy, 5 after')
  const warnings = logs.filter((l) => l.level === 'warn')
  t.equal(warnings.filter((l) => /pings withheld/.test(l.msg)).length, 1, 'warns once when pings stop, not every tick')
  t.match(warnings.find((l) => /healthy again/.test(l.msg)), { obj: { unhealthyMs: 700 } }, 'says when they resume, and after how long')
})

t.test('WATCHDOG_PID of another process: no pings (the watchdog belongs to that process)', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 500 }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  t.equal(run.summary.watchdogIntervalMs, null)
  t.equal(pings(sock.messages).length, 0)
  t.equal(sock.messages[0]!.fields['READY'], '1', 'READY=1 is still sent')
})

t.test('without WATCHDOG_USEC: READY and STOPPING only', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 400 }, { NOTIFY_SOCKET: sock.path })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', HANG_MS, 'STOPPING=1')
  t.equal(run.summary.watchdogIntervalMs, null)
  t.same(sock.messages.map((m) => Object.keys(m.fields)[0]), ['READY', 'STOPPING'])
})

t.test('libsystemd missing: a warning, no crash, nothing sent', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 300, library: 'libsystemd-does-not-exist.so.0' }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  t.equal(run.summary.enabled, false)
  t.ok(run.logs.some((l) => l.level === 'warn' && /cannot load libsystemd-does-not-exist\.so\.0/.test(l.msg)), 'names the library and the fix')
  t.equal(sock.messages.length, 0)
})

t.test('NOTIFY_SOCKET unset (not under systemd): every call is a no-op, with a debug line', async (t) => {
  const run = await runChild({ runMs: 300 }, { WATCHDOG_USEC: '200000' })
  t.same(run.summary, { pid: run.pid, enabled: false, watchdogIntervalMs: null })
  t.ok(run.logs.some((l) => l.level === 'debug' && /NOTIFY_SOCKET is not set/.test(l.msg)))
})

t.test('NOTIFY_SOCKET names no socket: one warning, the service keeps running', async (t) => {
  const run = await runChild({ runMs: 500 }, { NOTIFY_SOCKET: '/nonexistent/kvw/notify.sock', WATCHDOG_USEC: '200000' })
  t.equal(run.summary.enabled, true)
  t.equal(run.summary.watchdogIntervalMs, 200)
  t.equal(run.logs.filter((l) => /sending to NOTIFY_SOCKET failed/.test(l.msg)).length, 1, 'logged once, not per ping')
})
