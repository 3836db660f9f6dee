// The adaptive (φ accrual) hang detector on a real QEMU guest: after learning the guest's rhythm
// it reverts a hang within adaptive_min_timeout + 1 s of the last heartbeat, over 5 minutes of
// a healthy guest it reverts nothing, and what it learned outlives the revert.
//
// Margins: heartbeat_timeout is generous (E2E_HEARTBEAT_TIMEOUT_S × 3), so before the learning
// is done nothing can revert the guest; adaptive_min_timeout (ADAPTIVE_MIN_S) is well above the
// gaps a TCG guest on a loaded 2-core machine shows (bench/traces/e2e-guest.json, recorded at load
// 17 on 2 cores: see bench/README.md), and the detector only ever lengthens its deadline past
// gaps it has seen. Should the learned rhythm have made the deadline longer than the minimum
// (a stall while learning), the test says so and checks the revert against the deadline that
// /status announced instead, which is what the service promised.
import t, { type Test } from 'tap'
import { canRunE2E } from '../../harness/guest.ts'
import { E2E_HEARTBEAT_TIMEOUT_S, revertCycle, ServiceRig, waitForStatus } from '../../harness/service.ts'

const ADAPTIVE_MIN_S = 5
const LEARNING_S = 60
const HEALTHY_S = 300

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  // Boot (up to minutes on a busy machine) + learning + 5 minutes healthy + the hang.
  t.setTimeout(1_500_000)
  t.test('adaptive detector on a real guest: no revert in 5 minutes healthy, a hang reverted at the φ deadline', adaptive)
}

async function adaptive (t: Test): Promise<void> {
  const rig = new ServiceRig('kvw-e2e-adaptive', {
    viaProxy: true,
    extraConfig: {
      heartbeat_timeout: E2E_HEARTBEAT_TIMEOUT_S * 3,
      heartbeat_detector: 'adaptive',
      phi_threshold: 8,
      adaptive_min_timeout: ADAPTIVE_MIN_S,
      adaptive_learning: LEARNING_S
    }
  })
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start()
  const svc = rig.service!
  const beats = rig.beats!
  // The snapshot pauses the guest: taken in maintenance (which adds no gaps), so that pause is no
  // part of the rhythm the detector learns.
  t.equal((await svc.request('POST', '/api/v1/revert/disable?minutes=5')).status, 200)
  await rig.takeSnapshot()
  t.equal((await svc.request('POST', '/api/v1/revert/enable')).status, 200)
  const learnFrom = Date.now()
  let status = await svc.get('/api/v1/status')
  t.match(status.watchdog.detector, { detector: 'adaptive', rule: 'fixed' }, 'still learning: the fixed timeout')
  t.ok(status.watchdog.detector.learned_seconds < LEARNING_S, `${status.watchdog.detector.learned_seconds} s learned so far`)

  // Learning: heartbeat_timeout rules until LEARNING_S of heartbeats are seen.
  status = await waitForStatus(svc, 'the detector has learned', (s) => s.watchdog.detector.rule === 'phi', (LEARNING_S + E2E_HEARTBEAT_TIMEOUT_S * 3) * 1000)
  t.comment(`learned after ${Math.round((Date.now() - learnFrom) / 1000)} s: ${JSON.stringify(status.watchdog.detector)}`)

  // Healthy for 5 minutes: not one revert.
  const healthyFrom = Date.now()
  const deadlines: number[] = []
  while (Date.now() - healthyFrom < HEALTHY_S * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 5000))
    const s = await svc.get('/api/v1/status')
    if (s.watchdog.detector.effective_timeout !== null) deadlines.push(s.watchdog.detector.effective_timeout)
  }
  const during = beats.beats.filter((b) => b.at >= healthyFrom).map((b) => b.at)
  const gaps = during.slice(1).map((at, i) => at - during[i]!)
  t.comment(`healthy ${HEALTHY_S} s: ${gaps.length} gaps, longest ${Math.max(...gaps)} ms; effective timeout seen ${Math.min(...deadlines)}–${Math.max(...deadlines)} s`)
  const reverts = (await svc.events('revert_started')).filter((e) => Date.parse(e.ts) >= learnFrom)
  t.same(reverts.map((e) => `${e.ts} ${e.reason}`), [], `no revert while learning and over ${HEALTHY_S} s of a healthy guest`)
  status = await svc.get('/api/v1/status')
  t.equal(status.watchdog.state, 'healthy')
  t.equal(status.watchdog.detector.rule, 'phi', 'the φ deadline is in force')

  // The hang.
  const announced = status.watchdog.detector.effective_timeout as number
  if (announced > ADAPTIVE_MIN_S) t.comment(`the learned rhythm put the deadline at ${announced} s, above adaptive_min_timeout ${ADAPTIVE_MIN_S} s`)
  const sent = Date.now()
  rig.control!.setCommand('hang')
  const cycle = await revertCycle(svc, beats, sent, (e) => e.reason === 'heartbeat_timeout')
  const startedAt = Date.parse(cycle.started.ts)
  const lastBeat = beats.beats.filter((b) => b.at < startedAt).at(-1)!
  const afterMs = startedAt - lastBeat.at
  t.comment(`revert started ${afterMs} ms after the last heartbeat (${String(cycle.started.detail)})`)
  t.ok(afterMs >= ADAPTIVE_MIN_S * 1000 - 50, `not before adaptive_min_timeout (${afterMs} ms)`)
  t.ok(afterMs <= Math.max(ADAPTIVE_MIN_S, announced) * 1000 + 1000, `within the φ deadline (${Math.max(ADAPTIVE_MIN_S, announced)} s) + 1 s of the last heartbeat: ${afterMs} ms`)
  t.ok(afterMs < E2E_HEARTBEAT_TIMEOUT_S * 3 * 1000, 'well before heartbeat_timeout')
  t.match(cycle.started.detail, /φ \d+\.\d+, threshold 8/, 'the audit trail says φ decided')
  t.ok(rig.isSnapshotSeq(cycle.firstBeat.seq), `the guest came back from the snapshot (seq ${cycle.firstBeat.seq})`)
  const kept = cycle.status.watchdog.detector
  t.ok(kept.learned_seconds >= LEARNING_S && kept.samples >= status.watchdog.detector.samples,
    `after the revert the learned rhythm is kept, the same guest came back (${kept.samples} gaps, ${kept.learned_seconds} s)`)
}
