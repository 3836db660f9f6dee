// State that must survive a restart of the service: a new app on the same data_dir finds the
// maintenance a technician set, and an "exhausted" watchdog stays exhausted.
import t from 'tap'
import { build, assertError, call, events, scratchDir, GUEST } from './helpers.ts'

t.test('maintenance set through the API survives a restart', async (t) => {
  const dataDir = scratchDir(t)
  const first = await build(t, { config: { data_dir: dataDir }, manualClose: true })
  t.teardown(() => first.app.close()) // a no-op once closed below; closes it if an assertion threw first
  const disable = await call(first.app, '/api/v1/revert/disable?minutes=30')
  t.equal(disable.status, 200)
  const until30 = disable.body.details.until
  await first.app.close()

  const second = await build(t, { config: { data_dir: dataDir } })
  const status = (await call(second.app, '/api/v1/status')).body
  t.equal(status.auto_revert_enabled, false)
  t.equal(status.watchdog.state, 'maintenance')
  t.match(status.watchdog.maintenance, { reason: 'technician', until: until30 })
  t.equal((await call(second.app, '/api/v1/heartbeat/status')).body.enabled, false)
  assertError(t, await call(second.app, { url: '/api/v1/revert/request?reason=idle', ...GUEST }), 409, 'CONFLICT', /maintenance \(technician/)
  // The audit trail is the same file: the new app reads what the old one wrote.
  t.equal((await events(second.app, 'maintenance_on')).length, 1)

  t.equal((await call(second.app, '/api/v1/revert/enable')).status, 200)
  await second.app.close()
  const third = await build(t, { config: { data_dir: dataDir } })
  t.equal((await call(third.app, '/api/v1/status')).body.watchdog.maintenance, null, 'switched off and saved so')
})

t.test('maintenance without expiry (indefinite) survives a restart', async (t) => {
  const dataDir = scratchDir(t)
  const first = await build(t, { config: { data_dir: dataDir }, manualClose: true })
  t.teardown(() => first.app.close())
  t.equal((await call(first.app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' })).status, 200)
  await first.app.close()
  const second = await build(t, { config: { data_dir: dataDir } })
  t.match((await call(second.app, '/api/v1/status')).body.watchdog.maintenance, { reason: 'technician', until: null })
})

t.test('"exhausted" survives a restart, and the new service leaves the VM alone', async (t) => {
  const dataDir = scratchDir(t)
  // The shortest loop: one revert, one escalated revert, exhausted (about 3 s).
  const config = { data_dir: dataDir, heartbeat_timeout: 1, startup_grace: 0, post_revert_grace: 1, max_reverts: 1 }
  const first = await build(t, { config, manualClose: true })
  t.teardown(() => first.app.close())
  await first.run(10_000, () => first.app.watchdogs.get('test')!.view().state === 'exhausted')
  const before = (await call(first.app, '/api/v1/status')).body.watchdog
  t.equal(before.counters.reverts, 2)
  await first.app.close()

  const second = await build(t, { config })
  const status = (await call(second.app, '/api/v1/status')).body.watchdog
  t.equal(status.state, 'exhausted')
  t.same(status.exhausted, before.exhausted, 'the same exhaustion: when and why')
  t.equal(status.counters.exhaustions, 1, 'counters are kept')
  // Longer than heartbeat_timeout + post_revert_grace: a watchdog that forgot would revert.
  await second.run(10_000)
  t.equal(second.app.watchdogs.get('test')!.view().state, 'exhausted')
  t.equal(second.lifecycle.length, 0, 'libvirt saw no revert from the new service')
  assertError(t, await call(second.app, { method: 'POST', url: '/api/v1/vm/restart', ...GUEST }), 409, 'CONFLICT', /exhausted/)

  // Reset is saved too.
  t.equal((await call(second.app, { method: 'POST', url: '/api/v1/watchdog/reset' })).status, 200)
  t.equal((await call(second.app, '/api/v1/heartbeat')).body.details.state, 'healthy')
  await second.app.close()
  const third = await build(t, { config: { ...config, heartbeat_timeout: 600 } })
  const after = (await call(third.app, '/api/v1/status')).body.watchdog
  t.equal(after.exhausted, null, 'the reset was saved')
  t.equal(after.state, 'starting')
})
