// The notifier in a child process against a real unix datagram socket standing in for systemd's
// NOTIFY_SOCKET: what systemd would receive, from which pid, and when pings stop.
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openNotifySocket, notifySocketUnavailable, type NotifyMessage } from '../helpers/notify-socket.ts'

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
const gaps = (ms: NotifyMessage[]) => ms.slice(1).map((m, i) => m.at - ms[i]!.at)

const unavailable = notifySocketUnavailable()
const needsSocket = unavailable ? { skip: `a notify socket needs python3: ${unavailable}` } : {}

t.test('READY=1, STATUS, watchdog pings at half WATCHDOG_USEC, STOPPING=1, all from the main pid', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 1000, status: 'libvirt connected' }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 2000, 'STOPPING=1')

  t.same(run.summary, { pid: run.pid, enabled: true, watchdogIntervalMs: 200 })
  const first = sock.messages[0]!
  t.same(first.fields, { READY: '1', STATUS: 'listening on 127.0.0.1:8000' }, 'READY=1 comes first, with its status line')
  t.ok(sock.messages.some((m) => m.raw === 'STATUS=libvirt connected'), 'status() sends STATUS=')
  t.equal(sock.messages.at(-1)!.raw, 'STOPPING=1', 'STOPPING=1 comes last')
  t.ok(sock.messages.every((m) => m.pid === run.pid), 'every datagram comes from the child itself (NotifyAccess=main)')

  const p = pings(sock.messages)
  t.ok(p.length >= 6, `about 10 pings in 1 s at a 100 ms period (got ${p.length})`)
  t.ok(p.length <= 13, `no more than the period allows (got ${p.length})`)
  t.ok(Math.max(...gaps(p)) < 200, `every ping comes before the 200 ms timeout (largest gap ${Math.round(Math.max(...gaps(p)))} ms)`)
})

t.test('a blocked event loop stops the pings; they resume when it runs again', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  await runChild({ runMs: 2200, hangAtMs: 500, hangMs: 1000 }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 2000, 'STOPPING=1')
  const p = pings(sock.messages)
  const largest = Math.max(...gaps(p))
  t.ok(largest >= 900, `no ping while the loop is blocked (largest gap ${Math.round(largest)} ms; systemd would restart after 200)`)
  const afterGap = p.findIndex((m, i) => i > 0 && m.at - p[i - 1]!.at === largest)
  t.ok(p.length - afterGap >= 3, 'pings resume afterwards, with no burst of catch-up pings')
  t.ok(Math.min(...gaps(p.slice(afterGap))) >= 50, 'the resumed pings keep their period')
})

t.test('an unhealthy service withholds its pings and says so', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 1600, unhealthyFromMs: 400, unhealthyToMs: 1100 }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000' })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 2000, 'STOPPING=1')
  const largest = Math.max(...gaps(pings(sock.messages)))
  t.ok(largest >= 600, `no ping while unhealthy (largest gap ${Math.round(largest)} ms)`)
  t.ok(run.logs.some((l) => l.level === 'warn' && /unhealthy; watchdog pings withheld/.test(l.msg)), 'warns once when pings stop')
  t.ok(run.logs.some((l) => l.level === 'warn' && /healthy again/.test(l.msg)), 'says when they resume')
  t.equal(run.logs.filter((l) => /pings withheld/.test(l.msg)).length, 1, 'the warning is not repeated every tick')
})

t.test('WATCHDOG_PID of another process: no pings (the watchdog belongs to that process)', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 500 }, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 2000, 'STOPPING=1')
  t.equal(run.summary.watchdogIntervalMs, null)
  t.equal(pings(sock.messages).length, 0)
  t.equal(sock.messages[0]!.fields['READY'], '1', 'READY=1 is still sent')
})

t.test('without WATCHDOG_USEC: READY and STOPPING only', needsSocket, async (t) => {
  const sock = await openNotifySocket()
  t.teardown(() => sock.close())
  const run = await runChild({ runMs: 400 }, { NOTIFY_SOCKET: sock.path })
  await sock.waitFor((m) => m.fields['STOPPING'] === '1', 2000, 'STOPPING=1')
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
