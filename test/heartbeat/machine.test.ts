// The pure heartbeat state machine, driven with a fake clock (plain numbers): every transition,
// then random event sequences checked against the machine's invariants.
import t from 'tap'
import {
  initialState, nextDeadline, publicState, recentRevertCount, step, toPersisted,
  type Action, type MachineEvent, type MachineSettings, type StepResult, type WatchdogState
} from '../../src/heartbeat/machine.ts'
import { parsePersistedState, type PersistedWatchdogState } from '../../src/heartbeat/persisted.ts'
import { mulberry32 } from '../../harness/prng.ts'
import { SHORT_TIMING_SETTINGS as SETTINGS } from '../helpers/machine-settings.ts'

const T0 = 1_700_000_000_000
const S = 1000

type RevertAction = Extract<Action, { type: 'revert' }>

/** Plays the runtime's part: feeds events, and `tick`s at each deadline as time moves on. */
class Sim {
  state: WatchdogState
  now: number
  readonly settings: MachineSettings
  /** Every action since the last take(). */
  actions: Action[] = []
  last: StepResult | null = null

  constructor (settings: Partial<MachineSettings> = {}, persisted: PersistedWatchdogState | null = null, now = T0) {
    this.settings = { ...SETTINGS, ...settings }
    this.now = now
    this.state = initialState(persisted, now, this.settings)
  }

  feed (event: MachineEvent): StepResult {
    const r = step(this.state, event, this.now, this.settings)
    this.state = r.state
    this.actions.push(...r.actions)
    this.last = r
    return r
  }

  /** Moves the clock to `to`, ticking at every deadline on the way (as the runtime's timer does). */
  advanceTo (to: number): this {
    for (let i = 0; i < 10_000; i++) {
      const d = nextDeadline(this.state)
      if (d === null || d > to) break
      this.now = Math.max(this.now, d)
      this.feed({ type: 'tick' })
    }
    this.now = Math.max(this.now, to)
    return this
  }

  advance (ms: number): this { return this.advanceTo(this.now + ms) }

  /** Exactly one tick at `at` (no deadlines on the way are visited). */
  tickAt (at: number): StepResult {
    this.now = at
    return this.feed({ type: 'tick' })
  }

  heartbeat (seq?: number): StepResult { return this.feed({ type: 'heartbeat', seq }) }

  take (): Action[] {
    const a = this.actions
    this.actions = []
    return a
  }

  get public () { return publicState(this.state, this.now) }
}

const reverts = (actions: Action[]) => actions.filter((a): a is RevertAction => a.type === 'revert')
const ofType = <K extends Action['type']>(actions: Action[], type: K) => actions.filter((a): a is Extract<Action, { type: K }> => a.type === type)
const audits = (actions: Action[], kind?: string) => ofType(actions, 'audit').map((a) => a.entry).filter((e) => kind === undefined || e.kind === kind)

/** Completes the revert in flight successfully after `durationMs`. */
function finish (sim: Sim, durationMs = 1500) {
  sim.now += durationMs
  return sim.feed({ type: 'revert_finished', durationMs })
}

t.test('startup grace without a heartbeat: revert exactly at start + max(startup_grace, timeout)', async (t) => {
  const sim = new Sim()
  t.equal(sim.public, 'starting')
  t.equal(nextDeadline(sim.state), T0 + 30 * S)
  t.same(reverts(sim.tickAt(T0 + 30 * S - 1).actions), [], 'not 1 ms early')
  const r = sim.tickAt(T0 + 30 * S)
  t.match(reverts(r.actions), [{ reason: 'no_heartbeat_after_start', source: 'auto', escalate: false, attempt: 1, dueAt: T0 + 30 * S }])
  t.equal(sim.public, 'reverting')

  const short = new Sim({ startup_grace: 0 })
  t.equal(nextDeadline(short.state), T0 + 10 * S, 'startup grace shorter than the timeout: the timeout applies')
})

t.test('startup with a heartbeat: healthy at once, never reverted because the service started', async (t) => {
  const sim = new Sim()
  sim.now = T0 + 2 * S
  const r = sim.heartbeat(1)
  t.equal(sim.public, 'healthy')
  t.match(ofType(r.actions, 'log'), [{ level: 'info', msg: 'first heartbeat' }, { msg: 'state: starting -> healthy' }])
  for (let i = 2; i < 60; i++) {
    sim.advance(S)
    sim.heartbeat(i)
  }
  t.same(reverts(sim.take()), [])
  t.equal(sim.state.heartbeatsTotal, 59)
  t.equal(sim.state.lastSeq, 59)
})

t.test('a plain heartbeat is not worth a log line, nor a persist', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.now += S
  const r = sim.heartbeat(2)
  t.same(r.actions, [])
})

t.test('healthy -> late at timeout/2 -> revert exactly at the timeout (not 1 ms early)', async (t) => {
  const sim = new Sim()
  sim.now = T0 + 1000
  sim.heartbeat(1)
  const last = sim.now
  t.equal(nextDeadline(sim.state), last + 5 * S, 'early warning at timeout / 2')
  t.equal(publicState(sim.state, last + 5 * S), 'late', 'publicState reads the clock before the tick comes')
  const late = sim.tickAt(last + 5 * S)
  t.equal(sim.public, 'late')
  t.match(ofType(late.actions, 'log'), [{ level: 'warn', msg: 'heartbeat late' }, { msg: 'state: healthy -> late' }])
  t.equal(nextDeadline(sim.state), last + 10 * S)
  t.same(reverts(sim.tickAt(last + 10 * S - 1).actions), [], 'no revert 1 ms before the deadline')
  t.equal(sim.public, 'late')
  const r = sim.tickAt(last + 10 * S)
  t.match(reverts(r.actions), [{ reason: 'heartbeat_timeout', source: 'auto', dueAt: last + 10 * S }])
  t.match(audits(r.actions, 'revert_started'), [{ reason: 'heartbeat_timeout', lateByMs: 0 }])
  t.ok(ofType(r.actions, 'persist').length === 1, 'recentReverts changed: persist')
  t.ok(ofType(r.actions, 'log').some((l) => l.msg === 'revert: heartbeat_timeout'), 'the revert decision is logged with its reason')
})

t.test('late -> healthy on a heartbeat; deadlines move with each heartbeat', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(7 * S)
  t.equal(sim.public, 'late')
  const r = sim.heartbeat(2)
  t.equal(sim.public, 'healthy')
  t.match(ofType(r.actions, 'log'), [{ msg: 'heartbeat back after a gap', fields: { gapMs: 7 * S } }, { msg: 'state: late -> healthy' }])
  sim.advance(9 * S)
  t.same(reverts(sim.take()), [], 'the timeout counts from the newest heartbeat')
})

t.test('VM not running while watching: revert at once with the reason', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.now += 2 * S
  const r = sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/destroyed' })
  t.match(reverts(r.actions), [{ reason: 'vm_not_running', detail: 'shutoff/destroyed', source: 'auto' }])

  const starting = new Sim()
  starting.now += 100
  t.match(reverts(starting.feed({ type: 'vm_state', running: false, reason: 'shutoff/shutdown' }).actions), [{ reason: 'vm_not_running' }],
    'during the startup grace too: the exhibit must come up')

  const running = new Sim()
  t.same(running.feed({ type: 'vm_state', running: true, reason: 'running/booted' }).actions.filter((a) => a.type === 'revert'), [])
})

t.test('a revert in flight: lifecycle noise ignored, requests coalesced, no second revert', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(10 * S)
  t.equal(reverts(sim.take()).length, 1)
  sim.now += 100
  t.same(sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/from_snapshot' }).actions, [], 'stopped(from_snapshot) during the revert')
  const g = sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' })
  t.same(g.outcome, { outcome: 'coalesced', why: 'a revert (heartbeat_timeout) is under way' })
  const tech = sim.feed({ type: 'revert_requested', reason: 'technician', source: 'technician' })
  t.equal(tech.outcome?.outcome, 'coalesced')
  sim.advance(60 * S)
  t.same(reverts(sim.take()), [], 'nothing while the libvirt call runs, however long')
  t.match(audits(sim.actions.concat(g.actions, tech.actions), 'revert_request').map((e) => e['outcome']), ['coalesced', 'coalesced'])
})

t.test('grace: ended at once by the first heartbeat, recovery time recorded', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(10 * S)
  const revertAt = sim.now
  finish(sim, 1500)
  t.equal(sim.public, 'grace')
  t.equal(nextDeadline(sim.state), sim.now + 20 * S)
  t.match(sim.state.lastRevert, { reason: 'heartbeat_timeout', durationMs: 1500, outcome: 'awaiting_heartbeat' })
  sim.now += 2500
  const r = sim.heartbeat(7)
  t.equal(sim.public, 'healthy')
  t.match(audits(r.actions, 'recovery'), [{ reason: 'heartbeat_timeout', recoveryMs: sim.now - revertAt }])
  t.match(sim.state.lastRevert, { outcome: 'recovered', recoveryMs: 4000 })
  t.equal(sim.state.counters.outcomes['recovered'], 1)
  t.same(ofType(r.actions, 'alert'), [], 'an ordinary recovery raises no alert')
})

t.test('grace expires without a heartbeat: another revert, exactly at the end of the grace', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(10 * S)
  finish(sim)
  const end = sim.now + 20 * S
  t.same(reverts(sim.tickAt(end - 1).actions), [])
  const r = sim.tickAt(end)
  t.match(reverts(r.actions), [{ reason: 'no_heartbeat_after_revert', source: 'auto', escalate: false, dueAt: end }])
  t.match(audits(r.actions, 'no_recovery'), [{ reason: 'heartbeat_timeout' }])
  t.equal(sim.state.recentReverts.length, 2)
})

t.test('revert loop limit: max_reverts, then one escalated revert, then exhausted', async (t) => {
  const sim = new Sim({ max_reverts: 3 })
  sim.heartbeat(1)
  const seen: RevertAction[] = []
  const alerts: Action[] = []
  // Nothing ever heartbeats again: each revert's grace expires.
  for (let i = 0; i < 10; i++) {
    sim.advance(30 * S)
    const a = sim.take()
    seen.push(...reverts(a))
    alerts.push(...ofType(a, 'alert'))
    if (sim.state.revert?.inFlight) finish(sim)
  }
  t.same(seen.map((r) => [r.reason, r.escalate]), [
    ['heartbeat_timeout', false],
    ['no_heartbeat_after_revert', false],
    ['no_heartbeat_after_revert', false],
    ['no_heartbeat_after_revert', true]
  ], 'three normal reverts, one escalated, then no more')
  t.equal(sim.public, 'exhausted')
  t.match(alerts, [{ kind: 'revert_storm' }, { kind: 'exhausted' }], 'exhausted is alerted once')
  t.equal(nextDeadline(sim.state), null, 'nothing is due: the VM is left as it is')
  t.same(sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/crashed' }).actions.filter((a) => a.type === 'revert'), [])
  t.equal(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome?.outcome, 'refused')
  const hb = sim.heartbeat(99)
  t.equal(sim.state.lastSeq, 99, 'heartbeats are still recorded while exhausted')
  t.same(reverts(hb.actions), [])
  t.equal(sim.public, 'exhausted')
  t.equal(sim.state.counters.escalations, 1)
  t.equal(sim.state.counters.exhaustions, 1)
})

t.test('escalated revert that brings heartbeats back: recovered alert; the next trigger at the limit exhausts', async (t) => {
  const sim = new Sim({ max_reverts: 2 })
  sim.heartbeat(1)
  for (let i = 0; i < 3; i++) {
    sim.advance(30 * S)
    if (sim.state.revert?.inFlight) finish(sim)
  }
  t.equal(sim.state.escalated, true)
  sim.now += S
  const r = sim.heartbeat(2)
  t.match(ofType(r.actions, 'alert'), [{ kind: 'recovered' }])
  t.equal(sim.public, 'healthy')
  sim.take()
  sim.advance(10 * S) // hangs again, still within the window
  t.equal(sim.public, 'exhausted')
  t.same(reverts(sim.take()), [])
})

t.test('escalation is re-armed once the window has room again', async (t) => {
  const sim = new Sim({ max_reverts: 2, revert_window: 120 })
  sim.heartbeat(1)
  for (let i = 0; i < 3; i++) {
    sim.advance(30 * S)
    if (sim.state.revert?.inFlight) finish(sim)
  }
  sim.heartbeat(2) // the escalated revert worked
  t.equal(sim.state.escalated, true)
  for (let i = 0; i < 20; i++) { sim.advance(S * 10 - 1); sim.heartbeat(3 + i) } // ~200 s of health
  t.equal(recentRevertCount(sim.state, sim.now, sim.settings), 0)
  sim.take()
  sim.advance(10 * S)
  t.match(reverts(sim.take()), [{ reason: 'heartbeat_timeout', escalate: false }], 'a normal revert again')
  t.equal(sim.state.escalated, false)
})

t.test('exhausted is cleared by a technician: reset, technician revert, maintenance', async (t) => {
  const exhausted = () => {
    const sim = new Sim({ max_reverts: 1 })
    sim.heartbeat(1)
    for (let i = 0; i < 4; i++) {
      sim.advance(30 * S)
      if (sim.state.revert?.inFlight) finish(sim)
    }
    t.equal(sim.public, 'exhausted')
    sim.take()
    return sim
  }
  let sim = exhausted()
  const r = sim.feed({ type: 'reset' })
  t.equal(sim.public, 'starting', 'reset: watching again with a fresh grace')
  t.same(sim.state.recentReverts, [], 'the loop limit starts afresh')
  t.match(audits(r.actions, 'exhausted_cleared'), [{ reason: 'reset' }])
  t.same(reverts(sim.tickAt(sim.now + 29 * S).actions), [], 'no instant revert after reset')
  t.match(reverts(sim.tickAt(sim.now + S).actions), [{ reason: 'no_heartbeat_after_start' }])

  sim = exhausted()
  const tr = sim.feed({ type: 'revert_requested', reason: 'fixed the disk', source: 'technician' })
  t.equal(tr.outcome?.outcome, 'started')
  t.match(reverts(tr.actions), [{ reason: 'fixed the disk', source: 'technician' }])
  t.equal(sim.state.exhausted, null)

  sim = exhausted()
  sim.feed({ type: 'maintenance_on', until: null })
  t.equal(sim.public, 'maintenance')
  t.equal(sim.state.exhausted, null)

  sim = exhausted()
  sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/crashed' })
  const off = sim.feed({ type: 'maintenance_off' })
  t.match(reverts(off.actions), [{ reason: 'vm_not_running' }], 'maintenance off with the VM known down: it comes up at once')
})

t.test('a failed revert is retried with doubling backoff, capped; retries are not new reverts', async (t) => {
  const sim = new Sim({ revert_retry_initial: 5, revert_retry_max: 30 })
  sim.heartbeat(1)
  sim.advance(10 * S)
  t.equal(reverts(sim.take()).length, 1)
  const delays: number[] = []
  for (let attempt = 1; attempt <= 6; attempt++) {
    sim.now += 200
    const f = sim.feed({ type: 'revert_failed', error: 'libvirt: not connected' })
    t.match(audits(f.actions, 'revert_failed'), [{ attempt, error: 'libvirt: not connected' }])
    const retryAt = sim.state.revert!.retryAt!
    delays.push(retryAt - sim.now)
    t.equal(sim.public, 'reverting', 'reverting while waiting for the retry')
    t.equal(nextDeadline(sim.state), retryAt)
    t.same(reverts(sim.tickAt(retryAt - 1).actions), [], 'not before retryAt')
    t.match(reverts(sim.tickAt(retryAt).actions), [{ reason: 'heartbeat_timeout', attempt: attempt + 1 }])
  }
  t.same(delays, [5000, 10000, 20000, 30000, 30000, 30000])
  t.equal(sim.state.recentReverts.length, 1, 'one revert in the window, however many attempts')
  t.equal(sim.state.counters.reverts, 1)
  t.equal(sim.state.counters.outcomes['failed_attempts'], 6)
  finish(sim)
  t.match(sim.state.lastRevert, { attempts: 7, outcome: 'awaiting_heartbeat', error: null })
})

t.test('retry_now (libvirt is back) runs a waiting retry at once; otherwise does nothing', async (t) => {
  const sim = new Sim({ revert_retry_initial: 60, revert_retry_max: 300 })
  t.same(reverts(sim.feed({ type: 'retry_now', why: 'libvirt back' }).actions), [], 'no revert pending: nothing')
  sim.feed({ type: 'vm_state', running: false, reason: 'shutoff' })
  t.same(reverts(sim.feed({ type: 'retry_now', why: 'libvirt back' }).actions), [], 'revert in flight: nothing')
  sim.now += 10
  sim.feed({ type: 'revert_failed', error: 'not connected' })
  t.equal(sim.state.revert!.retryAt, sim.now + 60 * S)
  sim.now += 2 * S
  const r = sim.feed({ type: 'retry_now', why: 'libvirt back' })
  t.match(reverts(r.actions), [{ reason: 'vm_not_running', attempt: 2 }])
  t.equal(sim.state.revert!.inFlight, true)
})

t.test('heartbeats during a pending retry of a heartbeat revert cancel it', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(10 * S)
  sim.now += 100
  sim.feed({ type: 'revert_failed', error: 'boom' })
  sim.now += 1000
  const r = sim.heartbeat(2)
  t.equal(sim.public, 'healthy')
  t.match(audits(r.actions, 'revert_cancelled'), [{ reason: 'heartbeats are back' }])
  t.equal(sim.state.revert, null)
})

t.test('maintenance with an expiry: no reverts, heartbeats recorded, then a fresh grace', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  const until = sim.now + 120 * S
  const on = sim.feed({ type: 'maintenance_on', until, note: 'projector' })
  t.equal(sim.public, 'maintenance')
  t.match(sim.state.maintenance, { reason: 'technician', until, note: 'projector' })
  t.ok(ofType(on.actions, 'persist').length === 1)
  t.equal(nextDeadline(sim.state), until, 'the only deadline is the end of maintenance')
  sim.now += 50 * S
  t.same(reverts(sim.feed({ type: 'vm_state', running: true, reason: 'running/booted' }).actions), [])
  sim.heartbeat(2)
  t.equal(sim.state.lastSeq, 2)
  t.equal(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome?.outcome, 'refused')
  sim.take()
  const end = sim.tickAt(until)
  t.match(audits(end.actions, 'maintenance_expired'), [{ reason: 'technician' }])
  t.equal(sim.public, 'starting', 'heartbeats stopped 70 s ago: a fresh grace, not an instant revert')
  t.equal(nextDeadline(sim.state), until + 30 * S)
  t.same(reverts(sim.tickAt(until + 30 * S - 1).actions), [])
  t.match(reverts(sim.tickAt(until + 30 * S).actions), [{ reason: 'no_heartbeat_after_start' }])

  const flowing = new Sim()
  flowing.feed({ type: 'maintenance_on', until: T0 + 10 * S })
  for (let i = 0; i < 12; i++) { flowing.advance(S); flowing.heartbeat(i) }
  t.equal(flowing.public, 'healthy', 'heartbeats flowing when maintenance ended: healthy at once')
})

t.test('maintenance without expiry ends only by maintenance_off', async (t) => {
  const sim = new Sim()
  sim.feed({ type: 'maintenance_on', until: null })
  t.equal(nextDeadline(sim.state), null)
  sim.advance(24 * 3600 * S)
  t.same(reverts(sim.take()), [])
  t.equal(sim.public, 'maintenance')
  sim.feed({ type: 'maintenance_off' })
  t.equal(sim.public, 'starting')
  t.equal(nextDeadline(sim.state), sim.now + 30 * S)
})

t.test('technician revert in maintenance: allowed, and maintenance stays', async (t) => {
  const sim = new Sim()
  sim.feed({ type: 'maintenance_on', until: null })
  const r = sim.feed({ type: 'revert_requested', reason: 'technician', source: 'technician' })
  t.match(reverts(r.actions), [{ source: 'technician' }])
  t.equal(sim.public, 'reverting')
  t.equal(sim.state.recentReverts.length, 0, 'technician reverts do not count against the limit')
  finish(sim)
  t.equal(sim.public, 'maintenance')
  sim.take()
  sim.advance(3600 * S)
  t.same(reverts(sim.take()), [], 'the post-revert grace does not expire into a revert in maintenance')
})

t.test('a failed automatic revert is not retried once maintenance began', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.advance(10 * S)
  sim.feed({ type: 'maintenance_on', until: null })
  sim.now += 100
  const f = sim.feed({ type: 'revert_failed', error: 'x' })
  t.equal(sim.state.revert, null)
  t.match(audits(f.actions, 'revert_failed'), [{ retryInMs: null }])
  t.equal(nextDeadline(sim.state), null)
  t.equal(sim.state.lastRevert?.outcome, 'abandoned')
})

t.test('auto_revert_enabled: false is maintenance (config) without expiry', async (t) => {
  const sim = new Sim({ auto_revert_enabled: false })
  t.match(sim.state.maintenance, { reason: 'config', until: null })
  t.equal(sim.public, 'maintenance')
  sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/crashed' })
  sim.advance(3600 * S)
  t.same(reverts(sim.take()), [], 'watches, never reverts on its own')
  sim.feed({ type: 'maintenance_off' }) // EVC's /revert/enable
  t.match(reverts(sim.take()), [{ reason: 'vm_not_running' }])

  const restarted = new Sim({ auto_revert_enabled: false }, toPersisted(sim.state))
  t.match(restarted.state.maintenance, { reason: 'config' }, 'the config flag applies again after a restart, as in EVC')
  const enabled = new Sim({ auto_revert_enabled: true }, toPersisted(new Sim({ auto_revert_enabled: false }).state))
  t.equal(enabled.state.maintenance, null, 'config maintenance goes when the config enables auto revert')
})

t.test('manual stop and start', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  const stop = sim.feed({ type: 'stop_requested' })
  t.match(stop.actions.filter((a) => a.type === 'destroy'), [{ type: 'destroy' }])
  t.match(sim.state.maintenance, { reason: 'stopped', until: null })
  sim.now += 300
  t.same(reverts(sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/destroyed' }).actions), [], 'stopped on purpose: stays off')
  sim.advance(3600 * S)
  t.same(reverts(sim.take()), [])

  const restarted = new Sim({}, toPersisted(sim.state), sim.now + 60 * S)
  restarted.feed({ type: 'vm_state', running: false, reason: 'shutoff/destroyed' })
  t.same(reverts(restarted.take()), [], 'after a service restart the stopped VM stays off')

  const start = sim.feed({ type: 'start_requested' })
  t.same(start.outcome, { outcome: 'started' })
  t.match(reverts(start.actions), [{ reason: 'technician_start', source: 'technician' }])
  t.equal(sim.state.maintenance, null)
  finish(sim)
  t.equal(sim.public, 'grace')
  sim.now += 3000
  sim.heartbeat(1)
  t.equal(sim.public, 'healthy')
})

t.test('stop during technician maintenance, then start: the maintenance comes back', async (t) => {
  const sim = new Sim()
  sim.feed({ type: 'maintenance_on', until: null, note: 'x' })
  sim.feed({ type: 'stop_requested' })
  sim.feed({ type: 'start_requested' })
  t.match(sim.state.maintenance, { reason: 'technician', note: 'x' })
})

t.test('guest revert requests: limit per interval, refused in maintenance, coalesced in grace', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  sim.now += S
  const first = sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' })
  t.same(first.outcome, { outcome: 'started' })
  t.match(reverts(first.actions), [{ reason: 'idle', source: 'guest' }])
  t.equal(sim.state.recentReverts.length, 1, 'guest reverts count against the limit')
  t.equal(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome?.outcome, 'coalesced')
  finish(sim)
  t.equal(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome?.outcome, 'coalesced', 'in grace')
  sim.now += 2000
  sim.heartbeat(2)
  const soon = sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' })
  t.equal(soon.outcome?.outcome, 'refused')
  t.match(soon.outcome?.why, /at most one every 60 s/)
  t.same(reverts(soon.actions), [])
  t.match(audits(soon.actions, 'revert_request'), [{ outcome: 'refused' }])
  while (sim.now < T0 + S + 60 * S) { sim.advance(S); sim.heartbeat(3) }
  t.equal(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome?.outcome, 'started', 'after the interval')

  const m = new Sim()
  m.feed({ type: 'maintenance_on', until: null })
  const refused = m.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' })
  t.match(refused.outcome, { outcome: 'refused', why: /maintenance/ })
})

t.test('guest revert requests at the loop limit are refused: a guest cannot escalate or exhaust its watchdog', async (t) => {
  const sim = new Sim({ max_reverts: 2, guest_revert_min_interval: 0 })
  sim.heartbeat(1)
  for (let i = 0; i < 2; i++) {
    sim.now += 2000
    t.same(sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' }).outcome, { outcome: 'started' })
    finish(sim)
    sim.now += 1000
    sim.heartbeat(2 + i)
  }
  sim.now += 2000
  const third = sim.feed({ type: 'revert_requested', reason: 'idle', source: 'guest' })
  t.match(third.outcome, { outcome: 'refused', why: /revert limit reached: 2 reverts.*a hang is still reverted/ })
  t.same(reverts(third.actions), [], 'no escalated revert for a guest')
  t.equal(sim.state.escalated, false)
  t.equal(sim.state.exhausted, null)
  // A real hang at the limit still gets the one escalated revert.
  sim.take()
  sim.advance(SETTINGS.heartbeat_timeout * S)
  t.match(reverts(sim.take()), [{ reason: 'heartbeat_timeout', escalate: true }])
})

t.test('screen detector requests: count like a timeout, no guest interval, refused in maintenance, exhaust at the limit', async (t) => {
  const sim = new Sim({ max_reverts: 2 })
  sim.heartbeat(1)
  sim.now += S
  const first = sim.feed({ type: 'revert_requested', reason: 'screen_frozen', source: 'screen' })
  t.same(first.outcome, { outcome: 'started' })
  t.match(reverts(first.actions), [{ reason: 'screen_frozen', source: 'auto', escalate: false }])
  t.equal(sim.state.recentReverts.length, 1, 'counts toward the loop limit')
  t.equal(sim.state.lastGuestRevertAt, null, 'not a guest revert')
  finish(sim)
  sim.now += 2000
  sim.heartbeat(2)
  // The guest's minimum interval does not apply: a second frozen screen 2 s later is reverted.
  t.same(sim.feed({ type: 'revert_requested', reason: 'screen_frozen', source: 'screen' }).outcome, { outcome: 'started' })
  finish(sim)
  sim.now += 2000
  sim.heartbeat(3)
  const third = sim.feed({ type: 'revert_requested', reason: 'screen_frozen', source: 'screen' })
  t.match(reverts(third.actions), [{ escalate: true }], 'at the limit: the one escalated revert')
  finish(sim)
  sim.now += 2000
  sim.heartbeat(4)
  const fourth = sim.feed({ type: 'revert_requested', reason: 'screen_frozen', source: 'screen' })
  t.match(fourth.outcome, { outcome: 'refused', why: /revert limit reached/ })
  t.equal(sim.public, 'exhausted')

  const m = new Sim()
  m.feed({ type: 'maintenance_on', until: null })
  t.match(m.feed({ type: 'revert_requested', reason: 'screen_frozen', source: 'screen' }).outcome, { outcome: 'refused', why: /maintenance/ })
})

t.test('schedule: closed is maintenance + shutdown; open reverts (each day starts fresh)', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  const close = sim.feed({ type: 'schedule', open: false })
  t.match(close.actions.filter((a) => a.type === 'shutdown'), [{ type: 'shutdown' }])
  t.match(sim.state.maintenance, { reason: 'closed', until: null })
  t.equal(sim.public, 'maintenance')
  sim.now += 60 * S
  sim.feed({ type: 'vm_state', running: false, reason: 'shutoff/shutdown' })
  sim.advance(12 * 3600 * S)
  t.same(reverts(sim.take()), [], 'closed: nothing brings it back')
  t.same(sim.feed({ type: 'schedule', open: false }).actions.filter((a) => a.type === 'shutdown'), [], 'closing twice shuts down once')
  const open = sim.feed({ type: 'schedule', open: true })
  t.match(reverts(open.actions), [{ reason: 'schedule_open', source: 'schedule' }])
  t.equal(sim.state.maintenance, null)
  t.equal(sim.state.recentReverts.length, 0, 'schedule reverts do not count against the limit')
  finish(sim)
  t.equal(sim.public, 'grace')

  const notClosed = new Sim()
  t.same(reverts(notClosed.feed({ type: 'schedule', open: true }).actions), [], 'open when not closed (e.g. at service start): nothing')

  const tech = new Sim()
  tech.feed({ type: 'maintenance_on', until: null, note: 'repair' })
  tech.feed({ type: 'schedule', open: false })
  t.match(tech.state.maintenance, { reason: 'closed', previous: { reason: 'technician' } })
  const o = tech.feed({ type: 'schedule', open: true })
  t.same(reverts(o.actions), [], 'technician maintenance under the closed hours: no revert in the morning')
  t.match(tech.state.maintenance, { reason: 'technician', note: 'repair' })

  const stopped = new Sim()
  stopped.feed({ type: 'stop_requested' })
  t.same(stopped.feed({ type: 'schedule', open: false }).actions.filter((a) => a.type === 'shutdown'), [], 'a stopped VM is not shut down again')
  t.same(reverts(stopped.feed({ type: 'schedule', open: true }).actions), [], 'nor started by the opening')
})

t.test('restart with persisted state', async (t) => {
  // A healthy VM: the service restarts; heartbeats continue; no revert.
  const before = new Sim()
  before.heartbeat(1)
  const healthy = new Sim({}, toPersisted(before.state), T0 + 5 * S)
  healthy.now += 800
  healthy.heartbeat(2)
  healthy.advance(60 * S)
  healthy.heartbeat(3)
  t.same(reverts(healthy.take()).filter((r) => r.reason !== 'heartbeat_timeout'), [])

  // Exhausted stays exhausted.
  const ex = new Sim({ max_reverts: 1 })
  ex.heartbeat(1)
  for (let i = 0; i < 4; i++) { ex.advance(30 * S); if (ex.state.revert?.inFlight) finish(ex) }
  t.equal(ex.public, 'exhausted')
  const saved = JSON.parse(JSON.stringify(toPersisted(ex.state))) as unknown
  const restored = new Sim({ max_reverts: 1 }, parsePersistedState(saved), ex.now + 3600 * S)
  t.equal(restored.public, 'exhausted')
  restored.feed({ type: 'vm_state', running: false, reason: 'shutoff/crashed' })
  restored.advance(600 * S)
  t.same(reverts(restored.take()), [])
  t.equal(restored.state.counters.exhaustions, 1, 'counters survive')

  // Maintenance that expired while the service was down is cleared; one still running is kept.
  const m = new Sim()
  m.feed({ type: 'maintenance_on', until: T0 + 60 * S })
  const late = new Sim({}, toPersisted(m.state), T0 + 61 * S)
  t.equal(late.state.maintenance, null)
  t.equal(late.public, 'starting')
  const early = new Sim({}, toPersisted(m.state), T0 + 59 * S)
  t.match(early.state.maintenance, { until: T0 + 60 * S })
  t.equal(nextDeadline(early.state), T0 + 60 * S)

  // Reverts older than the window are dropped on restore.
  const old = new Sim({ revert_window: 100 })
  old.heartbeat(1)
  old.advance(10 * S)
  t.equal(new Sim({ revert_window: 100 }, toPersisted(old.state), old.now + 101 * S).state.recentReverts.length, 0)
})

t.test('persisted state: a damaged document is rejected with the field named', async (t) => {
  t.throws(() => parsePersistedState({ version: 1 }), /maintenance/)
  t.throws(() => parsePersistedState('nope'), /not valid/)
  const good = toPersisted(new Sim().state)
  t.same(parsePersistedState(JSON.parse(JSON.stringify(good))), good)
})

// ---------------------------------------------------------------------------------------------
// Random sequences: invariants hold for any order of events.

t.test('random event sequences keep the invariants', async (t) => {
  let checked = 0
  let revertsSeen = 0
  let exhaustedSeen = 0
  for (let seed = 1; seed <= 12; seed++) {
    const rnd = mulberry32(seed)
    const pick = <T> (xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
    const settings: MachineSettings = {
      ...SETTINGS,
      heartbeat_timeout: pick([1, 2, 5, 15]),
      startup_grace: pick([0, 3, 60]),
      post_revert_grace: pick([1, 5, 30]),
      auto_revert_enabled: rnd() < 0.85,
      max_reverts: pick([1, 2, 5]),
      revert_window: pick([10, 120, 3600]),
      revert_retry_initial: pick([0.1, 1, 5]),
      revert_retry_max: pick([1, 10, 300]),
      guest_revert_min_interval: pick([0, 5, 60]),
      heartbeat_detector: pick(['fixed', 'adaptive'] as const),
      adaptive_min_timeout: pick([1, 3]),
      phi_threshold: pick([1, 8])
    }
    let state = initialState(null, T0, settings)
    let now = T0
    /** A revert action was emitted and its result has not been fed yet. */
    let outstanding = false
    const problems: string[] = []
    const apply = (event: MachineEvent) => {
      const r = step(state, event, now, settings)
      const rs = reverts(r.actions)
      if (rs.length > 1) problems.push(`${seed}: two reverts in one step (${event.type})`)
      if (rs.length > 0) {
        revertsSeen++
        if (outstanding) problems.push(`${seed}: revert while one is outstanding (${event.type} at ${now - T0})`)
        outstanding = true
        const after = r.state
        if (rs[0]!.source !== 'technician' && (after.maintenance !== null || after.exhausted !== null)) {
          problems.push(`${seed}: ${rs[0]!.source} revert in ${after.maintenance ? 'maintenance' : 'exhausted'} (${event.type})`)
        }
      }
      if (r.state.exhausted !== null) exhaustedSeen++
      const d = nextDeadline(r.state)
      if (d !== null && d <= now) problems.push(`${seed}: deadline ${d - now} ms in the past after ${event.type}`)
      if (r.state.revert !== null && r.state.phase !== 'reverting') problems.push(`${seed}: revert job outside phase reverting`)
      if (r.state.phase === 'grace' && r.state.grace === null) problems.push(`${seed}: grace phase without grace`)
      const last = r.state.lastHeartbeatAt
      if (last !== null && r.state.timeoutAt !== null && (r.state.timeoutAt - last > settings.heartbeat_timeout * S || r.state.timeoutAt - last < Math.min(settings.adaptive_min_timeout, settings.heartbeat_timeout) * S)) {
        problems.push(`${seed}: revert deadline ${r.state.timeoutAt - last} ms after the last heartbeat`)
      }
      parsePersistedState(JSON.parse(JSON.stringify(toPersisted(r.state))))
      state = r.state
      checked++
    }
    for (let i = 0; i < 3000 && problems.length === 0; i++) {
      // Time moves on; the runtime ticks at every deadline on the way.
      const to = now + Math.floor(pick([0, 10, 300, 900, 2000, 8000, 40000]) * rnd())
      for (let d = nextDeadline(state); d !== null && d <= to; d = nextDeadline(state)) {
        now = Math.max(now, d)
        apply({ type: 'tick' })
      }
      now = to
      const roll = rnd()
      if (outstanding && roll < 0.25) {
        outstanding = false
        apply(rnd() < 0.7 ? { type: 'revert_finished', durationMs: Math.floor(rnd() * 3000) } : { type: 'revert_failed', error: 'boom' })
      } else if (roll < 0.55) {
        apply({ type: 'heartbeat', seq: i })
      } else if (roll < 0.62) {
        apply({ type: 'vm_state', running: rnd() < 0.5, reason: 'x' })
      } else if (roll < 0.72) {
        apply({ type: 'revert_requested', reason: 'r', source: pick(['guest', 'guest', 'technician', 'schedule'] as const) })
      } else if (roll < 0.77) {
        apply({ type: 'maintenance_on', until: rnd() < 0.5 ? null : now + Math.floor(rnd() * 60_000) + 1 })
      } else if (roll < 0.81) {
        apply({ type: 'maintenance_off' })
      } else if (roll < 0.84) {
        apply({ type: 'stop_requested' })
      } else if (roll < 0.87) {
        apply({ type: 'start_requested' })
      } else if (roll < 0.90) {
        apply({ type: 'reset' })
      } else if (roll < 0.94) {
        apply({ type: 'schedule', open: rnd() < 0.5 })
      } else if (roll < 0.95) {
        apply({ type: 'retry_now', why: 'libvirt back' })
      } else {
        apply({ type: 'tick' }) // a spurious tick changes nothing that is not due
      }
    }
    t.same(problems, [], `seed ${seed}`)
  }
  t.ok(checked > 30_000, `${checked} steps checked`)
  t.ok(revertsSeen > 500, `${revertsSeen} reverts happened`)
  t.ok(exhaustedSeen > 0, 'exhausted was reached')
})

t.test('results without a revert in flight are ignored; an unknown event is a clear error', async (t) => {
  const sim = new Sim()
  sim.heartbeat(1)
  const before = sim.state
  const f = sim.feed({ type: 'revert_finished', durationMs: 5 })
  t.match(ofType(f.actions, 'log'), [{ level: 'warn', msg: /without a running revert/ }])
  t.same(sim.state, before)
  t.match(ofType(sim.feed({ type: 'revert_failed', error: 'x' }).actions, 'log'), [{ level: 'warn' }])
  t.same(sim.state, before)
  t.throws(() => step(sim.state, { type: 'explode' } as unknown as MachineEvent, sim.now, sim.settings), /unknown watchdog event/)
})

t.test('restore: a standing maintenance under an expired one survives; an expired one under it does not', async (t) => {
  const sim = new Sim()
  sim.feed({ type: 'maintenance_on', until: T0 + 100 * S, note: 'short' })
  sim.feed({ type: 'schedule', open: false })
  const p = toPersisted(sim.state)
  t.match(p.maintenance, { reason: 'closed', previous: { reason: 'technician', until: T0 + 100 * S } })
  const later = new Sim({}, p, T0 + 200 * S)
  t.match(later.state.maintenance, { reason: 'closed', previous: null }, 'the technician maintenance ran out meanwhile')
  const sooner = new Sim({}, p, T0 + 50 * S)
  t.match(sooner.state.maintenance, { reason: 'closed', previous: { reason: 'technician' } })
})
