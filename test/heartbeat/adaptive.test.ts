// The adaptive (φ accrual) hang detector: its arithmetic, how the machine uses it, and property
// tests on seeded random arrival traces (plain-number clock, as the machine takes time).
import t from 'tap'
import {
  PHI_EPOCHS, PHI_EPOCH_GAPS, PHI_MIN_SAMPLES, addGap, crossingMs, detectorView, emptyWindow, fitModel, initialState,
  nextDeadline, phi, restoreWindow, step, toPersisted, type Action, type GapWindow, type MachineEvent, type MachineSettings,
  type PersistedWatchdogState, type WatchdogState
} from '../../src/heartbeat/machine.ts'
import { parsePersistedState } from '../../src/heartbeat/persisted.ts'
import { mulberry32 } from '../../harness/prng.ts'
import { machineSettings } from '../helpers/machine-settings.ts'

const T0 = 1_700_000_000_000
const S = 1000

const FIXED = machineSettings({ adaptive_learning: 60, max_reverts: 1000, revert_retry_max: 60 })
const ADAPTIVE: MachineSettings = { ...FIXED, heartbeat_detector: 'adaptive' }

type RevertAction = Extract<Action, { type: 'revert' }>
const reverts = (actions: Action[]) => actions.filter((a): a is RevertAction => a.type === 'revert')

/** The runtime's part: one timer at nextDeadline, a tick when it fires. */
class Sim {
  state: WatchdogState
  now: number
  actions: Action[] = []
  /** Every (time, event) fed, for replay. */
  log: Array<[number, MachineEvent]> = []
  readonly settings: MachineSettings
  constructor (settings: MachineSettings, now = T0) {
    this.settings = settings
    this.now = now
    this.state = initialState(null, now, settings)
  }

  feed (event: MachineEvent) {
    this.log.push([this.now, event])
    const r = step(this.state, event, this.now, this.settings)
    this.state = r.state
    this.actions.push(...r.actions)
    return r
  }

  advanceTo (to: number) {
    for (let d = nextDeadline(this.state); d !== null && d <= to; d = nextDeadline(this.state)) {
      this.now = Math.max(this.now, d)
      this.feed({ type: 'tick' })
    }
    this.now = Math.max(this.now, to)
  }

  beat () { return this.feed({ type: 'heartbeat' }) }
  get reverts () { return reverts(this.actions) }
}

function windowOf (gaps: number[]): GapWindow {
  return gaps.reduce((w, g) => addGap(w, g), emptyWindow())
}

t.test('φ: about 0.3 at the typical gap, rising with the silence; the crossing is the first whole ms with φ >= threshold', async (t) => {
  const steady = fitModel(windowOf(Array.from({ length: 100 }, (_, i) => 1000 + (i % 2 === 0 ? 50 : -50))), 0)!
  t.equal(steady.kernels.length, 1, 'one bucket')
  const center = steady.kernels[0]!.centerMs
  t.ok(Math.abs(phi(steady, center) - Math.log10(2)) < 1e-6, `φ at the typical gap is log10(2): ${phi(steady, center)}`)
  let previous = -1
  const bad: number[] = []
  for (let ms = 0; ms <= 20_000; ms += 7) {
    const p = phi(steady, ms)
    if (!Number.isFinite(p) || p < previous) bad.push(ms)
    previous = p
  }
  t.same(bad, [], 'φ finite and never falling from 0 to 20 s')
  t.ok(phi(steady, 15_000) > 1000, 'a far tail is a huge φ, not Infinity or NaN')
  for (const threshold of [1, 3, 8, 16]) {
    const at = crossingMs(steady, threshold, 0, 15_000)
    t.ok(phi(steady, at) >= threshold && phi(steady, at - 1) < threshold, `threshold ${threshold}: crossing at ${at} ms`)
  }
  t.ok(crossingMs(steady, 8, 0, 15_000) < 2000, 'a guest that never stalled: convicted within 2 s (before the minimum)')
  t.equal(crossingMs(steady, 8, 3000, 15_000), 3000, 'never before the minimum')

  // One remembered 6 s stall among an hour of 1 s beats keeps φ below 8 until the silence passes it.
  const gaps = Array.from({ length: 3600 }, () => 1000)
  gaps[1800] = 6000
  const stalled = fitModel(windowOf(gaps), 0)!
  const at = crossingMs(stalled, 8, 0, 30_000)
  t.ok(at > 6500 && at < 10_000, `a guest that stalled 6 s once: deadline after ${at} ms`)
  t.ok(phi(stalled, 5500) < 4, `φ during a 5.5 s stall: ${phi(stalled, 5500).toFixed(2)}`)
  t.equal(crossingMs(stalled, 8, 3000, 4000), 4000, 'φ below the threshold at the maximum: the maximum')

  t.equal(fitModel(windowOf(Array.from({ length: PHI_MIN_SAMPLES - 1 }, () => 1000)), 0), null, 'too few gaps: no model')
  t.equal(fitModel(windowOf(Array.from({ length: 59 }, () => 1000)), 60_000), null, 'less than the learning time: no model')
  t.not(fitModel(windowOf(Array.from({ length: 60 }, () => 1000)), 60_000), null, 'learning time reached')
})

t.test('the window: bounded, its totals exact, the given window unchanged', async (t) => {
  const rnd = mulberry32(7)
  let w = emptyWindow()
  const n = (PHI_EPOCHS + 2) * PHI_EPOCH_GAPS + 123
  for (let i = 0; i < n; i++) {
    const gap = Math.floor(rnd() * 20_000)
    if (i % 997 === 0) {
      const before = JSON.stringify(w)
      const next = addGap(w, gap)
      t.equal(JSON.stringify(w), before) || t.bailout('addGap changed its input')
      w = next
    } else {
      w = addGap(w, gap)
    }
  }
  t.equal(w.epochs.length, PHI_EPOCHS, `${PHI_EPOCHS} epochs kept`)
  t.equal(w.samples, (PHI_EPOCHS - 1) * PHI_EPOCH_GAPS + 123, 'the full epochs kept and the one being filled')
  const summed = w.total.map((_, k) => w.epochs.reduce((a, e) => a + e[k]!, 0))
  t.same(w.total, summed, 'the totals are the sums of the epochs')
  t.equal(w.total.reduce((a, b) => a + b, 0), w.samples)
})

t.test('adaptive, steady guest: fixed rules while learning, then the hang is reverted at adaptive_min_timeout', async (t) => {
  const sim = new Sim(ADAPTIVE)
  sim.beat()
  for (let i = 1; i < 60; i++) {
    sim.advanceTo(sim.now + S)
    sim.beat()
    t.equal(sim.state.timeoutAt! - sim.now, 15 * S, `${i} s of heartbeats: heartbeat_timeout`) || t.bailout()
  }
  t.match(detectorView(sim.state, sim.now, ADAPTIVE), { detector: 'adaptive', rule: 'fixed', phi: null, samples: 59, learnedSeconds: 59, effectiveTimeout: 15 })
  sim.advanceTo(sim.now + S)
  sim.beat()
  t.equal(sim.state.gapWindow.samples, 60)
  t.equal(sim.state.timeoutAt! - sim.now, 3 * S, 'then the φ deadline, clamped at adaptive_min_timeout')
  t.equal(sim.state.lateAt! - sim.now, 3 * S - 1, 'early warning just before the deadline (half of heartbeat_timeout would come after it)')
  t.match(detectorView(sim.state, sim.now, ADAPTIVE), { detector: 'adaptive', rule: 'phi', effectiveDeadline: sim.now + 3 * S, effectiveTimeout: 3, phiThreshold: 8, samples: 60, learnedSeconds: 60 })
  const last = sim.now
  sim.advanceTo(last + 3 * S - 1)
  t.same(sim.reverts, [], 'not 1 ms early')
  t.equal(nextDeadline(sim.state), last + 3 * S, 'ONE timer: the runtime is told the instant')
  sim.advanceTo(last + 3 * S)
  t.match(sim.reverts, [{ reason: 'heartbeat_timeout', dueAt: last + 3 * S, detail: /no heartbeat for 3 s \(adaptive_min_timeout\): φ \d+\.\d+, threshold 8 \(60 gaps/ }])
  t.equal(sim.state.gapWindow.samples, 60, 'the window is kept at the revert: the same guest comes back')
  sim.feed({ type: 'revert_finished', durationMs: 0 })
  sim.advanceTo(sim.now + 20 * S)
  sim.beat() // the reverted guest's first beat ends the grace
  const reverted = sim.now
  sim.advanceTo(reverted + 3 * S)
  t.equal(sim.reverts.length, 2, 'no second learning hour after the revert: its next hang is reverted at adaptive_min_timeout again')
  t.equal(sim.reverts[1]!.dueAt, reverted + 3 * S)

  const fixed = new Sim(FIXED)
  for (let i = 0; i <= 100; i++) {
    fixed.beat()
    fixed.advanceTo(fixed.now + S)
  }
  t.equal(fixed.state.timeoutAt! - (fixed.now - S), 15 * S, 'fixed: heartbeat_timeout, whatever the rhythm')
  t.equal(fixed.state.gapWindow.samples, 0, 'fixed: no window kept')
  t.match(detectorView(fixed.state, fixed.now, FIXED), { detector: 'fixed', rule: 'fixed', phi: null, phiThreshold: null, effectiveTimeout: 15 })
})

t.test('adaptive, a guest seen stalling: the deadline moves past its stalls; the next stall is not a hang', async (t) => {
  const settings = { ...ADAPTIVE, adaptive_learning: 600 }
  const sim = new Sim(settings)
  const fixed4 = new Sim({ ...FIXED, heartbeat_timeout: 4 })
  for (const s of [sim, fixed4]) s.beat()
  for (let i = 0; i < 1200; i++) {
    const gap = i === 300 ? 5 * S : S // one 5 s stall while learning
    for (const s of [sim, fixed4]) {
      s.advanceTo(s.now + gap)
      if (s.state.revert?.inFlight === true) s.feed({ type: 'revert_finished', durationMs: 0 })
      s.beat()
    }
  }
  const after = sim.state.timeoutAt! - sim.now
  t.ok(after > 5500, `deadline ${after} ms after a beat`)
  t.same(sim.reverts, [], 'no revert')
  t.equal(fixed4.reverts.length, 1, 'where fixed 4 s reverted the stall')
  sim.advanceTo(sim.now + 5 * S)
  sim.beat()
  t.same(sim.reverts, [], 'another 5 s stall: not a hang')
  const last = sim.now
  sim.advanceTo(last + 30 * S)
  t.match(sim.reverts, [{ reason: 'heartbeat_timeout' }], 'a real hang is still reverted')
  const at = sim.reverts[0]!.dueAt! - last
  t.ok(at > 5 * S && at < 15 * S, `after ${at} ms: past the stall, before heartbeat_timeout`)
})

t.test('adaptive, irregular guest: the deadline widens with the spread, up to heartbeat_timeout', async (t) => {
  const settings = { ...ADAPTIVE, adaptive_min_timeout: 1 }
  const sim = new Sim(settings)
  const rnd = mulberry32(3)
  sim.beat()
  for (let i = 0; i < 100; i++) {
    sim.advanceTo(sim.now + 500 + Math.floor(rnd() * 1500))
    sim.beat()
  }
  const after = sim.state.timeoutAt! - sim.now
  t.ok(after > 2 * S && after < 15 * S, `0.5–2 s gaps: deadline after ${after} ms`)
  const v = detectorView(sim.state, sim.now + after, settings)
  t.ok(v.phi! >= 8, `φ at the deadline ${v.phi}`)
  t.same(sim.reverts, [])
})

t.test('the window is the guest\'s: kept across maintenance and reverts; grace, maintenance and a boot add no gaps', async (t) => {
  const sim = new Sim(ADAPTIVE)
  t.equal(sim.state.gapWindow.samples, 0, 'empty at the first start')
  for (let i = 0; i < 40; i++) { sim.beat(); sim.advanceTo(sim.now + S) }
  t.equal(sim.state.gapWindow.samples, 39)
  sim.feed({ type: 'maintenance_on', until: null })
  for (let i = 0; i < 5; i++) { sim.beat(); sim.advanceTo(sim.now + S) }
  t.equal(sim.state.gapWindow.samples, 39, 'no gaps in maintenance')
  sim.advanceTo(sim.now + 30 * S) // the guest falls silent in maintenance (a technician at work)
  sim.feed({ type: 'maintenance_off' })
  t.equal(sim.state.gapWindow.samples, 39, 'watching again after maintenance: kept')
  sim.beat()
  t.equal(sim.state.gapWindow.samples, 39, 'the first beat after maintenance adds no gap (the 31 s silence is not the guest\'s rhythm)')
  for (let i = 0; i < 40; i++) { sim.advanceTo(sim.now + S); sim.beat() }
  t.equal(sim.state.gapWindow.samples, 79)
  sim.feed({ type: 'revert_requested', reason: 'technician says so', source: 'technician' })
  t.equal(sim.state.gapWindow.samples, 79, 'kept at a technician revert')
  sim.now += 2 * S
  sim.feed({ type: 'revert_finished', durationMs: 2 * S })
  sim.now += 20 * S
  sim.beat() // ends the grace: the gap since the old guest's last beat is not the guest's rhythm
  t.equal(sim.state.gapWindow.samples, 79)
  t.equal(sim.state.gapWindow.learnedMs, 79 * S)
  sim.now += S
  sim.beat()
  t.equal(sim.state.gapWindow.samples, 80, 'the reverted guest\'s gaps from its second beat on')
  t.equal(sim.state.gapWindow.learnedMs, 80 * S)
})

t.test('the window survives a restart: saved once per epoch, restored from the state file', async (t) => {
  const settings = { ...ADAPTIVE, adaptive_learning: 600 }
  const sim = new Sim(settings)
  sim.beat()
  let persists = 0
  for (let i = 0; i < PHI_EPOCH_GAPS + 10; i++) {
    sim.advanceTo(sim.now + (i === 100 ? 6 * S : S)) // one 6 s stall while the fixed rules apply
    persists += sim.feed({ type: 'heartbeat' }).actions.filter((a) => a.type === 'persist').length
  }
  t.equal(persists, 2, 'a save when the first and the second epoch began, not one per heartbeat')
  const saved = JSON.parse(JSON.stringify(toPersisted(sim.state))) as PersistedWatchdogState
  t.same(saved.gapWindow, { epochs: sim.state.gapWindow.epochs, filling: 10, learnedMs: sim.state.gapWindow.learnedMs })
  const restarted = initialState(parsePersistedState(saved), sim.now + 60 * S, settings)
  t.same(restarted.gapWindow, sim.state.gapWindow, 'the same window after the restart')
  const fresh = initialState(null, sim.now, settings)
  const model = fitModel(restarted.gapWindow, 600 * S)
  t.ok(model !== null && phi(model, 5500) < 8, 'the 6 s stall seen before the restart still holds φ down at 5.5 s')
  t.equal(fresh.gapWindow.samples, 0)

  const wrongShape = { ...saved, gapWindow: { ...saved.gapWindow!, epochs: saved.gapWindow!.epochs.map((e) => e.slice(1)) } }
  t.match(restoreWindow(wrongShape.gapWindow).problem, /buckets/, 'a window of another version is named')
  t.equal(initialState(parsePersistedState(wrongShape), sim.now, settings).gapWindow.samples, 0, '...and not used')
  const lying = { ...saved.gapWindow!, filling: 11 }
  t.match(restoreWindow(lying).problem, /newest epoch holds 10 gaps, the file says 11/)
})

/** A healthy guest's arrivals: `beats` gaps from a seeded mix of jitter and stalls. */
function trace (seed: number, beats: number): number[] {
  const rnd = mulberry32(seed)
  const meanMs = [500, 1000, 1000, 2000][Math.floor(rnd() * 4)]!
  const jitter = [10, 100, 400][Math.floor(rnd() * 3)]!
  const stallP = [0, 0.002, 0.02][Math.floor(rnd() * 3)]!
  return Array.from({ length: beats }, () => rnd() < stallP ? 3000 + Math.floor(rnd() * 9000) : Math.max(1, Math.round(meanMs + (rnd() * 2 - 1) * jitter)))
}

t.test('property: never later than the fixed deadline, never earlier than adaptive_min_timeout; φ >= threshold when it fires', async (t) => {
  let checked = 0
  let byPhi = 0
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = mulberry32(1000 + seed)
    const settings: MachineSettings = {
      ...ADAPTIVE,
      heartbeat_timeout: [4, 10, 15, 30][Math.floor(rnd() * 4)]!,
      adaptive_min_timeout: [1, 2, 3, 5][Math.floor(rnd() * 4)]!,
      phi_threshold: [1, 3, 8, 12, 30][Math.floor(rnd() * 5)]!
    }
    const fixedSettings: MachineSettings = { ...settings, heartbeat_detector: 'fixed' }
    const adaptive = new Sim(settings)
    const fixed = new Sim(fixedSettings)
    const gaps = trace(seed, 400)
    const hangAfter = 50 + Math.floor(rnd() * 350)
    const problems: string[] = []
    for (const sim of [adaptive, fixed]) sim.beat()
    for (const [i, gap] of gaps.slice(0, hangAfter).entries()) {
      for (const sim of [adaptive, fixed]) {
        sim.advanceTo(sim.now + gap)
        // A stall longer than the deadline was reverted: the revert takes no time here, the guest beats on.
        if (sim.state.revert?.inFlight === true) sim.feed({ type: 'revert_finished', durationMs: 0 })
        sim.beat()
      }
      const s = adaptive.state
      if (s.phase === 'healthy') {
        const after = s.timeoutAt! - s.lastHeartbeatAt!
        const min = Math.min(settings.adaptive_min_timeout, settings.heartbeat_timeout) * S
        if (after > settings.heartbeat_timeout * S) problems.push(`${seed}/${i}: deadline ${after} ms after the beat, later than heartbeat_timeout`)
        if (after < min) problems.push(`${seed}/${i}: deadline ${after} ms after the beat, earlier than adaptive_min_timeout`)
        if (s.gapWindow.epochs.length > PHI_EPOCHS) problems.push(`${seed}/${i}: ${s.gapWindow.epochs.length} epochs`)
        checked++
      }
    }
    // The guest hangs now: both detect it; the adaptive one never later, never before the minimum.
    const lastBeat = adaptive.now
    const due = adaptive.state.timeoutAt!
    const model = fitModel(adaptive.state.gapWindow, settings.adaptive_learning * S)
    const from = [adaptive.reverts.length, fixed.reverts.length]
    for (const sim of [adaptive, fixed]) sim.advanceTo(sim.now + 60 * S)
    const hang = adaptive.reverts.slice(from[0]).find((r) => r.reason === 'heartbeat_timeout')
    const fixedHang = fixed.reverts.slice(from[1]).find((r) => r.reason === 'heartbeat_timeout')
    if (hang === undefined || fixedHang === undefined) {
      problems.push(`${seed}: the hang was not reverted for heartbeat_timeout (adaptive ${hang !== undefined}, fixed ${fixedHang !== undefined})`)
    } else {
      if (fixedHang.dueAt !== lastBeat + settings.heartbeat_timeout * S) problems.push(`${seed}: fixed reverted at ${fixedHang.dueAt! - lastBeat} ms`)
      if (hang.dueAt !== due) problems.push(`${seed}: reverted at ${hang.dueAt} where the deadline said ${due}`)
      if (hang.dueAt! > fixedHang.dueAt!) problems.push(`${seed}: adaptive later than fixed`)
      if (hang.dueAt! - lastBeat < Math.min(settings.adaptive_min_timeout, settings.heartbeat_timeout) * S) problems.push(`${seed}: reverted before adaptive_min_timeout`)
      if (model !== null && hang.dueAt! - lastBeat < settings.heartbeat_timeout * S) {
        byPhi++
        if (phi(model, hang.dueAt! - lastBeat) < settings.phi_threshold) problems.push(`${seed}: reverted by φ below the threshold`)
      }
    }
    t.same(problems, [], `seed ${seed}`)
  }
  t.ok(checked > 5000, `${checked} deadlines checked`)
  t.ok(byPhi > 5, `${byPhi} hangs detected by φ before heartbeat_timeout`)
})

t.test('property: deterministic replay — the same events at the same times give the same states and actions', async (t) => {
  for (let seed = 1; seed <= 10; seed++) {
    const sim = new Sim({ ...ADAPTIVE, heartbeat_timeout: 10 })
    const rnd = mulberry32(seed)
    const gaps = trace(seed, 300)
    sim.beat()
    for (const gap of gaps) {
      sim.advanceTo(sim.now + gap + (rnd() < 0.01 ? 20 * S : 0)) // a hang now and then
      if (sim.state.revert !== null && rnd() < 0.9) { sim.now += 1500; sim.feed({ type: 'revert_finished', durationMs: 1500 }) }
      sim.beat()
    }
    const replay = new Sim({ ...ADAPTIVE, heartbeat_timeout: 10 })
    for (const [at, event] of sim.log) {
      replay.now = at
      replay.feed(event)
    }
    t.same(replay.state, sim.state, `seed ${seed}: same state`)
    t.same(replay.actions, sim.actions, `seed ${seed}: same actions (${sim.reverts.length} reverts)`)
  }
})
