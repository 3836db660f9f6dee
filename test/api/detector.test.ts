// The adaptive hang detector through the app (fake clock, libvirt's test driver): /status,
// /api/v1/vms and /metrics show the effective deadline and φ; a hang is reverted at
// adaptive_min_timeout once the guest's rhythm is known.
import t from 'tap'
import { build, call } from './helpers.ts'

function sample (text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('adaptive: learning, then the φ deadline, shown everywhere; the hang reverted at adaptive_min_timeout', async (t) => {
  const { app, run } = await build(t, { config: { heartbeat_detector: 'adaptive', heartbeat_timeout: 15, adaptive_min_timeout: 3, phi_threshold: 8, adaptive_learning: 30, startup_grace: 0 } })
  const beat = async () => t.equal((await call(app, '/api/v1/heartbeat')).status, 200)
  await beat()
  let status = (await call(app, '/api/v1/status')).body
  t.match(status.watchdog.detector, { detector: 'adaptive', rule: 'fixed', effective_timeout: 15, phi: null, phi_threshold: 8, samples: 0, learned_seconds: 0 }, 'learning: the fixed timeout')
  for (let i = 0; i < 30; i++) {
    await run(1000)
    await beat()
  }
  await run(1100)
  status = (await call(app, '/api/v1/status')).body
  const d = status.watchdog.detector
  t.match(d, { detector: 'adaptive', rule: 'phi', effective_timeout: 3, phi_threshold: 8, samples: 30, learned_seconds: 30 })
  t.ok(Math.abs(d.mean_gap_ms - 1000) < 70 && d.longest_gap_ms === d.mean_gap_ms, `one kind of gap, about 1 s: ${d.mean_gap_ms} ms`)
  t.ok(d.phi > 0.3 && d.phi < 2, `φ 1.1 s after a beat: ${d.phi}`)
  t.equal(Date.parse(d.effective_deadline) - Date.parse(status.watchdog.last_heartbeat), 3000, 'effective deadline: last heartbeat + 3 s')
  t.equal(status.heartbeat.is_timed_out, false)

  const vms = (await call(app, '/api/v1/vms')).body
  t.match(vms.vms[0].detector, { detector: 'adaptive', rule: 'phi', effective_timeout: 3, effective_deadline: d.effective_deadline })

  const metrics = (await app.inject({ url: '/metrics' })).body
  t.equal(sample(metrics, 'kvw_heartbeat_deadline_seconds{vm="test",detector="adaptive",rule="phi"}'), 3)
  t.equal(sample(metrics, 'kvw_heartbeat_phi{vm="test"}'), d.phi)

  // The guest hangs: 2.5 s after the last beat nothing yet, at 3 s the revert.
  await run(1400)
  t.equal((await call(app, '/api/v1/status')).body.watchdog.counters.reverts, 0, 'not before adaptive_min_timeout')
  await run(1000, () => app.watchdogs.get('test')!.view().lastRevert !== null)
  const after = (await call(app, '/api/v1/status')).body.watchdog
  t.match(after.last_revert, { reason: 'heartbeat_timeout', source: 'auto' })
  t.equal(Date.parse(after.last_revert.at) - Date.parse(after.last_heartbeat), 3000, 'reverted exactly 3 s after the last heartbeat')
  t.match(after.detector, { samples: 30, learned_seconds: 30 }, 'what was learned is kept at the revert: the same guest comes back')
  const audit = (await call(app, '/api/v1/events?kind=revert_started')).body.events
  t.match(audit[0], { reason: 'heartbeat_timeout', detail: /φ \d+\.\d+, threshold 8/ })
})

t.test('fixed (the default): heartbeat_timeout, no φ', async (t) => {
  const { app, run } = await build(t, { config: { heartbeat_timeout: 15 } })
  for (let i = 0; i < 40; i++) {
    await call(app, '/api/v1/heartbeat')
    await run(1000)
  }
  const d = (await call(app, '/api/v1/status')).body.watchdog.detector
  t.match(d, { detector: 'fixed', rule: 'fixed', effective_timeout: 15, phi: null, phi_threshold: null, samples: 0 })
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.equal(sample(metrics, 'kvw_heartbeat_deadline_seconds{vm="test",detector="fixed",rule="fixed"}'), 15)
  t.notOk(metrics.includes('kvw_heartbeat_phi{'), 'no φ series for a fixed VM')
})

t.test('config: adaptive_min_timeout above heartbeat_timeout is an error naming both', async (t) => {
  const { parseConfig, ConfigError } = await import('../../src/config/load.ts')
  t.throws(() => parseConfig({ heartbeat_detector: 'adaptive', heartbeat_timeout: 4, adaptive_min_timeout: 5 }, {}), ConfigError)
  try {
    parseConfig({ vms: [{ name: 'b', heartbeat_detector: 'adaptive', heartbeat_timeout: 4, adaptive_min_timeout: 5 }] }, {})
    t.fail('accepted')
  } catch (err) {
    t.match((err as InstanceType<typeof ConfigError>).problems, [/^vms\[0\]\.adaptive_min_timeout: 5 s is longer than heartbeat_timeout \(4 s\)/])
  }
  t.throws(() => parseConfig({ heartbeat_detector: 'sometimes' }, {}), /heartbeat_detector/)
  t.throws(() => parseConfig({ phi_threshold: 0 }, {}), /phi_threshold/)
  t.equal(parseConfig({}, {}).vms[0]!.heartbeat_detector, 'fixed', 'fixed by default')
})

t.test('adaptive: what the detector learned survives a restart of the service (the state file)', async (t) => {
  const config = { heartbeat_detector: 'adaptive', heartbeat_timeout: 15, adaptive_min_timeout: 3, phi_threshold: 8, adaptive_learning: 30, startup_grace: 0 }
  const first = await build(t, { config, manualClose: true })
  for (let i = 0; i <= 40; i++) {
    t.equal((await call(first.app, '/api/v1/heartbeat')).status, 200)
    await first.run(1000)
  }
  const learned = (await call(first.app, '/api/v1/status')).body.watchdog.detector
  t.match(learned, { rule: 'phi', samples: 40, learned_seconds: 40 })
  await first.app.close()

  const second = await build(t, { config: { ...config, data_dir: first.dataDir } })
  t.equal((await call(second.app, '/api/v1/heartbeat')).status, 200)
  const restored = (await call(second.app, '/api/v1/status')).body.watchdog.detector
  t.match(restored, { rule: 'phi', samples: 40, learned_seconds: 40, effective_timeout: 3 }, 'no second learning after the restart: the φ deadline at once')
})
