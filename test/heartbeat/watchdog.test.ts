// The watchdog runtime through the real koffi binding on libvirt's in-process test driver
// (test:///default: domain `test`, running, no snapshots on a fresh connection), on a fake
// clock: time moves only when a test moves it (in 50 ms steps, letting the libvirt work each
// step started finish before the next), so what is asserted is the order and the instants the
// runtime acts at, never how fast this machine is. Speed lives in bench/detection.ts.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { VM_DEFAULTS, type VmConfig } from '../../src/config/schema.ts'
import { AppError } from '../../src/errors.ts'
import { openHypervisor, snapshotXml, type Hypervisor, type LifecycleEvent } from '../../src/libvirt/index.ts'
import { parsePersistedState, type PersistedWatchdogState } from '../../src/heartbeat/persisted.ts'
import { AuditLog, StateFile } from '../../src/store/index.ts'
import type {
  AlertEvent, RevertEvent, Watchdog, WatchdogAuditEntry, WatchdogView
} from '../../src/heartbeat/watchdog.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import { newWatchdog, type TestWatchdogOptions } from '../helpers/watchdog.ts'

const T0 = Date.parse('2026-11-23T12:00:00Z')
const STEP_MS = 50
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function vmConfig (over: Partial<VmConfig> = {}): VmConfig {
  return {
    ...VM_DEFAULTS,
    name: 'test',
    heartbeat_check_interval: 60,
    heartbeat_timeout: 1,
    startup_grace: 0,
    post_revert_grace: 1,
    max_reverts: 2,
    revert_retry_initial: 0.2,
    revert_retry_max: 1,
    ...over
  }
}

/** In-memory ports (what src/store implements on disk). */
class MemoryPersistence {
  doc: PersistedWatchdogState | null = null
  saves = 0
  async load () { return this.doc === null ? null : structuredClone(this.doc) }
  async save (state: PersistedWatchdogState) { this.saves++; this.doc = structuredClone(state) }
}
class MemoryAudit {
  entries: WatchdogAuditEntry[] = []
  async append (entry: WatchdogAuditEntry) { this.entries.push(entry) }
  kinds () { return this.entries.map((e) => e.kind) }
}

async function openTestDriver (t: Test, withSnapshot = true): Promise<Hypervisor> {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  if (withSnapshot) await h.createSnapshot('test', snapshotXml('ready'))
  return h
}

interface Harness {
  h: Hypervisor
  w: Watchdog
  clock: FakeClock
  persistence: MemoryPersistence
  audit: MemoryAudit
  reverts: RevertEvent[]
  alerts: AlertEvent[]
  logs: Array<{ level: number, msg: string, [k: string]: unknown }>
  /** Moves the fake clock by `ms` in 50 ms steps; after each step the libvirt work it started finishes. Stops early once `until` holds. */
  run (ms: number, until?: (v: WatchdogView) => boolean): Promise<WatchdogView>
}

type HarnessOptions = Partial<Omit<TestWatchdogOptions, 'hypervisor'>> & { hypervisor?: Hypervisor, clock?: FakeClock, start?: boolean }

async function harness (t: Test, over: Partial<VmConfig> = {}, options: HarnessOptions = {}): Promise<Harness> {
  const h = options.hypervisor ?? await openTestDriver(t)
  const clock = options.clock ?? new FakeClock(T0)
  const persistence = (options.persistence as MemoryPersistence | undefined) ?? new MemoryPersistence()
  const audit = new MemoryAudit()
  const logs: Harness['logs'] = []
  const sink = new Writable({ write (chunk, _enc, cb) { logs.push(JSON.parse(String(chunk))); cb() } })
  const log = pino({ level: 'debug' }, sink).child({ vm: 'test' })
  const { start, ...rest } = options
  const w = newWatchdog({ vm: vmConfig(over), log, persistence, audit, ...rest, hypervisor: h, clock, timers: clock })
  const reverts: RevertEvent[] = []
  const alerts: AlertEvent[] = []
  w.on('revert', (e) => reverts.push(e))
  w.on('alert', (e) => alerts.push(e))
  t.teardown(() => w.close())
  if (start !== false) await w.start()
  const run = async (ms: number, until?: (v: WatchdogView) => boolean): Promise<WatchdogView> => {
    for (let moved = 0; moved < ms; moved += STEP_MS) {
      clock.advance(Math.min(STEP_MS, ms - moved))
      await w.settled()
      await clock.flush()
      if (until?.(w.view())) return w.view()
    }
    if (until && !until(w.view())) throw new Error(`not reached within ${ms} ms of fake time (state ${w.view().state})`)
    return w.view()
  }
  return { h, w, clock, persistence, audit, reverts, alerts, logs, run }
}

/**
 * Waits in real time for what libvirt's event thread delivers (lifecycle events), with a
 * generous bound that only a hang reaches; the fake clock does not move meanwhile.
 */
async function waitFor (w: Watchdog, pred: (v: WatchdogView) => boolean, what: string): Promise<WatchdogView> {
  const end = Date.now() + 30_000
  while (Date.now() < end) {
    const v = w.view()
    if (pred(v)) return v
    await sleep(10)
  }
  throw new Error(`timed out waiting for: ${what} (state ${w.view().state})`)
}

t.test('before start: commands answer NOT_READY', async (t) => {
  const { w } = await harness(t, {}, { start: false })
  t.throws(() => w.heartbeat(), AppError)
  t.throws(() => w.view(), { code: 'NOT_READY' })
})

t.test('no heartbeats: reverts, keeps reverting, escalates once, then exhausted and stops', async (t) => {
  const h0 = await harness(t, { heartbeat_timeout: 0.4, post_revert_grace: 0.3, max_reverts: 2 })
  const { h, w, reverts, alerts, audit, persistence } = h0
  const lifecycle: LifecycleEvent[] = []
  const off = h.onLifecycle((e) => lifecycle.push(e))
  t.teardown(off)
  const { run } = h0
  const v = await run(5000, (v) => v.state === 'exhausted')
  const finished = reverts.filter((r) => r.phase === 'finish')
  t.same(finished.map((r) => [r.reason, r.escalate, r.outcome]), [
    ['no_heartbeat_after_start', false, 'succeeded'],
    ['no_heartbeat_after_revert', false, 'succeeded'],
    ['no_heartbeat_after_revert', true, 'succeeded']
  ])
  t.match(alerts.map((a) => a.kind), ['revert_storm', 'exhausted'])
  t.equal(v.nextDeadline, null, 'nothing further is due')
  t.ok(lifecycle.some((e) => e.type === 'stopped' && e.detailName === 'destroyed'), 'the escalated revert destroyed the domain first')
  t.match(await h.domainState('test'), { state: 'running' }, 'the escalated revert left it running')
  await run(10_000)
  t.equal(reverts.filter((r) => r.phase === 'start').length, 3, 'no revert after exhausted, 10 s later')
  t.match(audit.kinds(), ['revert_started', 'revert_finished', 'no_recovery', 'revert_started', 'revert_finished', 'no_recovery', 'escalation', 'revert_started', 'revert_finished', 'no_recovery', 'exhausted'])
  t.ok(audit.entries.every((e) => e.vm === 'test' && !Number.isNaN(Date.parse(e.ts))), 'entries carry the VM and an ISO time')
  await w.close()
  t.match(persistence.doc, { exhausted: { reason: /escalated revert/ }, escalated: true })
  t.equal(persistence.doc?.recentReverts.length, 3)
})

t.test('a heartbeating VM is never reverted', async (t) => {
  const { w, reverts, run } = await harness(t, { heartbeat_timeout: 0.5 })
  for (let seq = 0; seq < 40; seq++) {
    w.heartbeat({ seq, status: 'ok', source: '10.0.2.15' })
    await run(450) // just inside the 500 ms timeout, 40 times
  }
  t.same(reverts, [])
  const v = w.view()
  t.equal(v.state, 'late', 'late after half the timeout without a beat, never reverted')
  t.equal(v.lastStatus, 'ok')
  t.equal(v.lastSource, '10.0.2.15')
  t.equal(v.heartbeatsTotal, 40)
  t.equal(v.secondsSinceLast, 0.45)
  w.heartbeat({ seq: 40 })
  t.equal(w.view().state, 'healthy')
})

t.test('a listener that throws is logged; heartbeats, the deadline timer and the revert go on', async (t) => {
  const { w, reverts, logs, run } = await harness(t, { heartbeat_timeout: 1, startup_grace: 0 })
  w.on('heartbeat', () => { throw new Error('broken observer (heartbeat)') })
  w.on('change', () => { throw new Error('broken observer (change)') })
  t.doesNotThrow(() => w.heartbeat({ seq: 1 }), 'the heartbeat caller (a route) sees no error')
  t.equal(w.view().heartbeatsTotal, 1)
  // The deadline fires from a timer: a throw there would be an uncaught exception.
  await run(2000, (v) => v.lastRevert !== null)
  t.match(reverts, [{ phase: 'start', reason: 'heartbeat_timeout' }])
  t.ok(logs.some((l) => l.msg === 'a listener of the watchdog failed; the watchdog goes on' && l['event'] === 'heartbeat'))
  t.ok(logs.some((l) => l.msg === 'a listener of the watchdog failed; the watchdog goes on' && l['event'] === 'change'))
})

t.test('the revert starts at the heartbeat deadline, not before, and the lag is audited', async (t) => {
  const { w, clock, reverts, audit, run } = await harness(t, { heartbeat_timeout: 1, post_revert_grace: 5 })
  for (let i = 0; i < 3; i++) {
    w.heartbeat({ seq: i })
    const deadline = w.view().lastHeartbeat! + 1000
    clock.advanceTo(deadline - 1)
    await w.settled()
    t.equal(reverts.length, 2 * i, `round ${i}: nothing 1 ms before the deadline`)
    clock.advanceTo(deadline)
    await w.settled()
    const start = reverts.filter((r) => r.phase === 'start').at(-1)!
    t.match(start, { reason: 'heartbeat_timeout', deadlineLagMs: 0 }, `round ${i}: the revert started at the deadline`)
    await run(1000, (v) => v.state === 'grace')
    w.heartbeat({ seq: 100 + i }) // recovered
  }
  const finished = audit.entries.filter((e) => e.kind === 'revert_finished')
  t.equal(finished.length, 3)
  t.same(finished.map((e) => e['deadlineLagMs']), [0, 0, 0], 'the audit entry carries deadlineLagMs')
  t.equal(audit.entries.filter((e) => e.kind === 'recovery').length, 3)
})

t.test('virDomainDestroy from outside: the lifecycle event causes a revert', async (t) => {
  const { h, w, clock, reverts } = await harness(t, { heartbeat_timeout: 30 })
  w.heartbeat({ seq: 1 })
  await h.destroy('test')
  await waitFor(w, (v) => v.state === 'grace', 'revert done')
  t.match(reverts[0], { phase: 'start', reason: 'vm_not_running', source: 'auto' })
  t.equal(clock.now(), T0, 'no time passed: the event did it, not the 60 s poll')
  t.match(w.view().lastRevert, { reason: 'vm_not_running', outcome: 'awaiting_heartbeat' })
  t.match(await h.domainState('test'), { state: 'running' })
  w.heartbeat({ seq: 2 })
  t.equal(w.view().state, 'healthy')
})

t.test('the safety-net poll notices a VM that went down without an event reaching us', async (t) => {
  const h = await openTestDriver(t)
  await h.destroy('test') // before the watchdog subscribes: no event for it
  const { w, reverts } = await harness(t, { heartbeat_timeout: 30, heartbeat_check_interval: 0.1 }, { hypervisor: h })
  // start() reads the state once: a stopped VM comes up at once, even in the startup grace.
  await waitFor(w, (v) => v.state === 'grace', 'revert done')
  t.match(reverts[0], { reason: 'vm_not_running' })
})

t.test('a missing snapshot: a clear failure, retried with backoff, then success once it exists', async (t) => {
  const h = await openTestDriver(t, false)
  const { w, reverts, audit, run } = await harness(t, { heartbeat_timeout: 0.3, revert_retry_initial: 0.2, revert_retry_max: 0.4 }, { hypervisor: h })
  await run(1000, () => reverts.filter((r) => r.outcome === 'failed').length >= 3)
  const failed = reverts.filter((r) => r.outcome === 'failed')
  t.match(failed[0]!.error, /snapshot "ready" of VM "test" does not exist/)
  const v = w.view()
  t.equal(v.state, 'reverting')
  t.ok(v.retryAt !== null)
  t.same(audit.entries.filter((e) => e.kind === 'revert_failed').map((e) => e['retryInMs']), [200, 400, 400], 'backoff doubles and is capped')
  t.equal(v.recentReverts, 1, 'retries are one revert')
  await h.createSnapshot('test', snapshotXml('ready'))
  await run(1000, (v) => v.state === 'grace')
  t.equal(w.view().lastRevert!.attempts, 4, 'the fourth attempt, 400 ms after the third, succeeded')
})

t.test('the state cannot be read right after a successful revert: the revert is finished, not reverted again', async (t) => {
  const h = await openTestDriver(t)
  // libvirt drops just after the revert call returned: the next state read fails, once.
  const revertToSnapshot = h.revertToSnapshot.bind(h)
  const domainState = h.domainState.bind(h)
  let revertCalls = 0
  let failNextRead = false
  h.revertToSnapshot = async (domain, snapshot) => {
    await revertToSnapshot(domain, snapshot)
    revertCalls++
    failNextRead = true
  }
  h.domainState = async (domain) => {
    if (failNextRead) {
      failNextRead = false
      throw new Error('injected: libvirt dropped while reading the state')
    }
    return await domainState(domain)
  }
  t.teardown(() => { h.revertToSnapshot = revertToSnapshot; h.domainState = domainState })
  const { w, reverts, logs, audit, run } = await harness(t, { heartbeat_timeout: 0.3, post_revert_grace: 5 }, { hypervisor: h })
  w.heartbeat({ seq: 1 })
  await run(1000, (v) => v.state === 'grace')
  await run(1000) // room for a (wrong) retry
  t.same(reverts.map((r) => `${r.phase} ${r.attempt}${r.outcome ? ` ${r.outcome}` : ''}`), ['start 1', 'finish 1 succeeded'])
  t.equal(revertCalls, 1, 'the exhibit was reverted once')
  t.equal(audit.entries.filter((e) => e.kind === 'revert_failed').length, 0)
  t.ok(logs.some((l) => l.level === 40 && /state cannot be read/.test(l.msg)), 'a warning says the state was not read')
  w.heartbeat({ seq: 2 })
  t.equal(w.view().state, 'healthy')
})

t.test('runExclusive: one libvirt action at a time; an automatic revert waits for a snapshot create', async (t) => {
  const { h, w, clock, reverts, run } = await harness(t, { heartbeat_timeout: 0.3 })
  let running = 0
  let overlap = false
  const job = (label: string) => w.runExclusive(label, async () => {
    running++
    if (running > 1) overlap = true
    await sleep(50)
    running--
    return label
  })
  t.same(await Promise.all([job('a'), job('b'), job('c')]), ['a', 'b', 'c'])
  t.equal(overlap, false)

  // A slow action holds the queue past the heartbeat deadline: the revert runs after it.
  w.heartbeat()
  let revertsWhileHeld = -1
  await w.runExclusive('snapshot_create', async () => {
    await h.createSnapshot('test', snapshotXml('other'))
    clock.advance(600) // the deadline passes while the action holds the queue
    await sleep(20)
    t.equal(w.view().action, 'snapshot_create')
    t.equal(w.view().state, 'reverting', 'the timeout was decided at its deadline')
    revertsWhileHeld = reverts.length
  })
  t.equal(revertsWhileHeld, 0, 'the revert did not start while the snapshot was being created')
  await run(STEP_MS, () => reverts.length > 0)
  t.match(reverts[0], { phase: 'start', reason: 'heartbeat_timeout' }, 'it ran once the queue was free')
  await t.rejects(w.runExclusive('fails', async () => { throw new Error('boom') }), /boom/, 'a failing action rejects its caller')
  t.equal(await w.runExclusive('after', async () => 'still works'), 'still works', 'and does not block the queue')
})

t.test('technician commands: stop stays stopped across a service restart; start reverts', async (t) => {
  const h = await openTestDriver(t)
  const persistence = new MemoryPersistence()
  const first = await harness(t, { heartbeat_timeout: 0.3 }, { hypervisor: h, persistence })
  first.w.heartbeat()
  await first.w.stopVm()
  t.match(await h.domainState('test'), { state: 'shutoff' })
  t.match(first.w.view(), { state: 'maintenance', maintenance: { reason: 'stopped', until: null }, autoRevertEnabled: false })
  await first.run(5000)
  t.same(first.reverts, [], 'no revert: stopped on purpose')
  await first.w.close()

  const second = await harness(t, { heartbeat_timeout: 0.3 }, { hypervisor: h, persistence, clock: first.clock })
  await second.run(5000)
  t.same(second.reverts, [], 'the restarted service leaves the stopped VM alone')
  t.equal(second.w.view().vmRunning, false)
  t.same(await second.w.startVm(), { outcome: 'started' })
  await second.run(1000, (v) => v.state === 'grace')
  t.match(second.reverts[0], { reason: 'technician_start', source: 'technician' })
  t.match(await h.domainState('test'), { state: 'running' })
  t.ok(second.audit.kinds().includes('vm_start'))
})

t.test('maintenance, guest requests and validation', async (t) => {
  const { w, reverts, run } = await harness(t, { heartbeat_timeout: 0.3 })
  await w.setMaintenance(0.01, 'technician', 'cleaning the screen') // 600 ms
  t.match(w.view(), { state: 'maintenance', maintenance: { reason: 'technician', note: 'cleaning the screen' } })
  t.match(w.requestRevert('idle', 'guest'), { outcome: 'refused', why: /maintenance/ })
  await run(550)
  t.same(reverts, [], 'no timeout revert in maintenance')
  t.equal(w.view().state, 'maintenance', 'still in maintenance 550 ms in')
  await run(STEP_MS)
  t.not(w.view().state, 'maintenance', 'expired at 600 ms')
  t.equal(w.view().state, 'starting', 'a fresh grace after maintenance')
  w.heartbeat()
  t.same(w.requestRevert('idle', 'guest'), { outcome: 'started' })
  t.match(w.requestRevert('idle', 'guest'), { outcome: 'coalesced' })
  await run(1000, (v) => v.state === 'grace')
  w.heartbeat()
  t.match(w.requestRevert('idle', 'guest'), { outcome: 'refused', why: /at most one every 60 s/ })

  t.throws(() => w.setMaintenance(-1), { code: 'BAD_REQUEST', message: /minutes/ })
  t.throws(() => w.setMaintenance(Number.NaN), { code: 'BAD_REQUEST' })
  t.throws(() => w.requestRevert('', 'guest'), { code: 'BAD_REQUEST' })
  t.throws(() => w.requestRevert('x', 'nobody' as 'guest'), { code: 'BAD_REQUEST' })
  w.heartbeat({ seq: -5, status: 'x'.repeat(1000) })
  t.equal(w.view().lastSeq, null, 'a bad seq is dropped, not stored')
  t.equal(w.view().lastStatus?.length, 200)

  await w.setMaintenance(null, 'config')
  t.match(w.view(), { maintenance: { reason: 'config', until: null }, autoRevertEnabled: false })
  await w.clearMaintenance()
  t.equal(w.view().autoRevertEnabled, true)
})

// (The destroy-after-timeout path needs a guest that ignores ACPI: the test driver shuts down at once.)
t.test('closing hours: graceful shutdown, no reverts while closed; opening reverts', async (t) => {
  const { h, w, reverts, run } = await harness(t, { heartbeat_timeout: 0.3 }, { shutdownTimeoutMs: 200 })
  w.heartbeat()
  w.schedule(false)
  t.match(w.view(), { state: 'maintenance', maintenance: { reason: 'closed' } })
  await run(5000)
  t.match(await h.domainState('test'), { state: 'shutoff' }, 'the test driver shuts down at once')
  t.same(reverts, [])
  w.schedule(true)
  await run(1000, (v) => v.state === 'grace')
  t.match(reverts[0], { reason: 'schedule_open', source: 'schedule' })
  t.match(await h.domainState('test'), { state: 'running' })
})

t.test('close() during a closing-time shutdown leaves no timer armed', async (t) => {
  const { w, clock } = await harness(t, { heartbeat_timeout: 0.3 }, { shutdownTimeoutMs: 60_000 })
  w.heartbeat()
  w.schedule(false) // queues the graceful shutdown, which arms its timeout when it has run
  await w.close()
  t.equal(clock.pending, 0, 'the shutdown that ran during close() armed nothing')
})

t.test('a damaged persisted state is reported and ignored, not fatal', async (t) => {
  const persistence = new MemoryPersistence()
  persistence.doc = { version: 1, maintenance: 'yes' } as unknown as PersistedWatchdogState
  const { w, logs } = await harness(t, {}, { persistence })
  t.equal(w.view().state, 'starting')
  t.ok(logs.some((l) => l.level === 50 && /cannot use the saved watchdog state/.test(l.msg)))
})

t.test('close() stops everything: no ticks, no polls, no reverts afterwards', async (t) => {
  const h = await openTestDriver(t)
  let stateReads = 0
  const counting = new Proxy(h, {
    get (target, prop) {
      if (prop === 'domainState') return (name: string) => { stateReads++; return target.domainState(name) }
      const value = Reflect.get(target, prop) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  const { w, clock, reverts, run } = await harness(t, { heartbeat_timeout: 0.3, heartbeat_check_interval: 0.05 }, { hypervisor: counting })
  w.heartbeat()
  const before = stateReads
  await run(150)
  t.equal(stateReads - before, 3, 'the poll runs every 50 ms')
  await w.close()
  t.equal(clock.pending, 0, 'no timer is left armed')
  const reads = stateReads
  clock.advance(600)
  t.equal(stateReads, reads, 'no poll after close')
  t.same(reverts, [], 'no revert after close, though the deadline passed')
  // Our own listener sees the destroy's event; a watchdog still subscribed would have seen it too.
  const seen = new Promise<void>((resolve) => { const off = h.onLifecycle((e) => { if (e.type === 'stopped') { off(); resolve() } }) })
  await h.destroy('test')
  await seen
  await w.settled()
  await clock.flush()
  t.same(reverts, [], 'lifecycle events are no longer followed')
})

t.test('a process with a watchdog exits on its own after close()', async (t) => {
  const script = `
    import { openHypervisor, snapshotXml } from ${JSON.stringify(fileURLToPath(new URL('../../src/libvirt/index.ts', import.meta.url)))}
    import { Watchdog } from ${JSON.stringify(fileURLToPath(new URL('../../src/heartbeat/watchdog.ts', import.meta.url)))}
    import { VM_DEFAULTS } from ${JSON.stringify(fileURLToPath(new URL('../../src/config/schema.ts', import.meta.url)))}
    import { realTimers, systemClock } from ${JSON.stringify(fileURLToPath(new URL('../../src/ports/index.ts', import.meta.url)))}
    import { SnapshotService } from ${JSON.stringify(fileURLToPath(new URL('../../src/snapshot/index.ts', import.meta.url)))}
    const h = openHypervisor('test:///default', { reconnect: false })
    await h.connect()
    await h.createSnapshot('test', snapshotXml('ready'))
    const quiet = { debug () {}, info () {}, warn () {}, error () {} }
    const snapshots = new SnapshotService({ hypervisor: h, keepRevisions: 3 })
    const w = new Watchdog({ vm: { ...VM_DEFAULTS, name: 'test', heartbeat_check_interval: 0.05, heartbeat_timeout: 1 }, hypervisor: h, log: quiet,
      clock: systemClock, timers: realTimers, guestRevertMinInterval: 60, resolveSnapshot: () => snapshots.resolveRevertTarget('test', 'ready'),
      persistence: { load: async () => null, save: async () => {} }, audit: { append: async () => {} } })
    await w.start()
    w.heartbeat({ seq: 1 })
    await w.close()
    await h.close()
    console.log('closed')
  `
  const started = Date.now()
  // The timeout only catches a hang (a leftover timer or libvirt thread keeping the process alive).
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 })
  t.equal(r.stdout.trim(), 'closed', r.stderr)
  t.equal(r.status, 0)
  t.equal(r.signal, null, 'not killed by the timeout: it exited on its own')
  t.comment(`child exited after ${Date.now() - started} ms`)
})

t.test('with the real store (state file + JSONL audit trail) in a scratch directory', async (t) => {
  const dir = t.testdir()
  const h = await openTestDriver(t)
  const stateFile = new StateFile(join(dir, 'state', 'test.json'), { parse: parsePersistedState })
  const auditLog = new AuditLog({ dir, sync: false })
  t.teardown(() => auditLog.close())
  const quiet = pino({ level: 'silent' })
  const clock = new FakeClock(T0)
  const w = newWatchdog({ vm: vmConfig({ heartbeat_timeout: 0.3 }), hypervisor: h, log: quiet, clock, timers: clock, persistence: stateFile, audit: auditLog })
  t.teardown(() => w.close())
  await w.start()
  clock.advance(300)
  await waitFor(w, (v) => v.state === 'grace', 'a revert')
  w.heartbeat({ seq: 1 })
  await w.setMaintenance(null)
  await w.close()
  const saved = parsePersistedState(JSON.parse(await readFile(join(dir, 'state', 'test.json'), 'utf8')))
  t.match(saved, { maintenance: { reason: 'technician' }, lastRevert: { reason: 'no_heartbeat_after_start', outcome: 'recovered' } })
  const lines = (await readFile(join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as WatchdogAuditEntry)
  t.match(lines.map((l) => l.kind), ['revert_started', 'revert_finished', 'recovery', 'maintenance_on'])
  t.ok(lines.every((l) => l.vm === 'test'))
})
