// 409 when an action conflicts with the watchdog's state, and 503 when libvirt is unreachable
// (the app still starts and reports it).
import t from 'tap'
import { build, assertError, call, events, GUEST, UNREACHABLE_URI, until } from './helpers.ts'

t.test('maintenance: guest revert requests are 409 CONFLICT, a technician\'s revert runs', async (t) => {
  const { app, lifecycle, run } = await build(t)
  const disable = await call(app, '/api/v1/revert/disable?minutes=10')
  t.equal(disable.status, 200)
  t.equal(disable.body.details.until, (await call(app, '/api/v1/status')).body.watchdog.maintenance.until, 'the answer\'s until is the one the watchdog keeps (to the ms)')

  for (const req of [
    { url: '/api/v1/revert/request?reason=idle', ...GUEST },
    { method: 'POST' as const, url: '/api/v1/revert/request', payload: { reason: 'process_missing' }, ...GUEST },
    { url: '/api/v1/vm/restart', ...GUEST },
    { method: 'POST' as const, url: '/api/v1/vms/test/vm/restart', ...GUEST }
  ]) {
    const r = await call(app, req)
    assertError(t, r, 409, 'CONFLICT', /^Revert not started: maintenance \(technician, until \d{4}-.*\): no reverts except by a technician$/)
    t.equal(r.body.error.details.vm, 'test')
  }
  const refused = await events(app, 'revert_request')
  t.equal(refused.length, 1, 'the first refusal is in the audit trail in full...')
  t.ok(refused.every((e) => e.outcome === 'refused'))
  t.same((await call(app, '/api/v1/status')).body.watchdog.counters.requests, { refused: 4 })
  await run(60_000)
  t.match(await events(app, 'revert_requests_summary'), [{ outcome: 'refused', count: 3 }], '...the other three counted in one summary (issue 13)')

  const technician = await call(app, { method: 'POST', url: '/api/v1/revert?reason=fixing' })
  t.equal(technician.status, 202)
  t.equal(technician.body.details.outcome, 'started')
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  t.match((await events(app, 'revert_started'))[0], { reason: 'fixing', source: 'technician' })
  t.same(lifecycle.filter((e) => e.domain === 'test').map((e) => e.type), ['stopped', 'started'], 'libvirt reverted the VM')
  const status = (await call(app, '/api/v1/status')).body
  t.equal(status.watchdog.maintenance?.reason, 'technician', 'maintenance stays on after the technician\'s revert')
  t.equal(status.auto_revert_enabled, false)
})

t.test('a guest may cause at most one revert per guest_revert_min_interval (default 60 s): 409', async (t) => {
  const { app } = await build(t)
  t.equal((await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })).status, 202)
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  t.equal((await call(app, { url: '/api/v1/heartbeat', ...GUEST })).body.details.state, 'healthy', 'the guest is back')
  const again = await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })
  assertError(t, again, 409, 'CONFLICT', /^Revert not started: the guest caused a revert \d+ s ago; at most one every 60 s$/)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert' })).body.details.outcome, 'started', 'a technician is not limited')
})

t.test('EVC\'s "Revert to Snapshot" (GET /vm/restart) from the host is a technician\'s: twice within 60 s, in maintenance, never counted as a guest revert', async (t) => {
  const { app } = await build(t)
  const first = await call(app, '/api/v1/vm/restart')
  t.equal(first.status, 202)
  t.match(first.body.details, { requester: 'technician', reason: 'technician', outcome: 'started' })
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  t.equal((await call(app, { url: '/api/v1/heartbeat', ...GUEST })).body.details.state, 'healthy', 'the guest is back')

  const second = await call(app, '/api/v1/vm/restart')
  t.equal(second.status, 202, `a second click within 60 s reverts again (${second.res.body})`)
  t.equal(second.body.details.outcome, 'started')
  await until('the second revert finished', async () => (await events(app, 'revert_finished')).length === 2)

  t.equal((await call(app, '/api/v1/revert/disable?minutes=10')).status, 200, '"Disable Auto-Revert"')
  const inMaintenance = await call(app, { method: 'POST', url: '/api/v1/vm/restart', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(inMaintenance.status, 202, `in maintenance the button still reverts (${inMaintenance.res.body})`)
  t.equal(inMaintenance.body.details.outcome, 'started')
  await until('the third revert finished', async () => (await events(app, 'revert_finished')).length === 3)

  const started = await events(app, 'revert_started')
  t.same(started.map((e) => e.source), ['technician', 'technician', 'technician'])
  const watchdog = (await call(app, '/api/v1/status')).body.watchdog
  t.equal(watchdog.recent_reverts, 0, 'none counted against max_reverts')
  t.same(watchdog.counters.by_source, { technician: 3 })
  t.equal(watchdog.maintenance?.reason, 'technician', 'maintenance stays on')
  // A guest asking the same is still held to the guest rules.
  assertError(t, await call(app, { url: '/api/v1/vm/restart', ...GUEST }), 409, 'CONFLICT', /maintenance/)
})

t.test('security.guest_revert_min_interval from the config applies', async (t) => {
  const { app } = await build(t, { config: { security: { guest_revert_min_interval: 0 } } })
  t.equal((await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })).status, 202)
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  t.equal((await call(app, { url: '/api/v1/heartbeat', ...GUEST })).body.details.state, 'healthy')
  const again = await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })
  t.equal(again.status, 202, `no minimum interval configured: a second guest revert may start (${again.res.body})`)
})

t.test('a stopped VM: guest requests 409, a technician revert starts it', async (t) => {
  const { app } = await build(t)
  await call(app, { method: 'POST', url: '/api/v1/vm/stop' })
  await until('the VM is shut off', async () => (await app.hypervisor.domainState('test')).state === 'shutoff')
  assertError(t, await call(app, { url: '/api/v1/vm/restart', ...GUEST }), 409, 'CONFLICT', /maintenance \(stopped\)/)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert' })).status, 202)
  await until('the VM runs', async () => (await app.hypervisor.domainState('test')).state === 'running')
  t.equal((await call(app, '/api/v1/status')).body.watchdog.maintenance, null, 'reverting a stopped VM starts it: no longer "stopped"')
})

t.test('libvirt unreachable: the app starts, /status says so, libvirt actions answer 503', async (t) => {
  const started = Date.now()
  // Ready without libvirt: startup does not wait for a connection. The race only turns a hang
  // (an app waiting for libvirt) into a failure; the time taken is only reported.
  let hang: NodeJS.Timeout | undefined
  const { app } = await Promise.race([
    build(t, { uri: UNREACHABLE_URI }),
    new Promise<never>((_resolve, reject) => { hang = setTimeout(() => reject(new Error('the app did not become ready without libvirt (hang)')), 60_000) })
  ]).finally(() => clearTimeout(hang))
  t.comment(`ready without libvirt after ${Date.now() - started} ms`)

  const status = await call(app, '/api/v1/status')
  t.equal(status.status, 200)
  t.match(status.body, {
    libvirt: { uri: UNREACHABLE_URI, connected: false },
    vm_state: 'unknown',
    vm_is_running: false,
    snapshot_exists: null,
    snapshot_target: null,
    snapshot_problems: ['libvirt is not reachable'],
    watchdog: { state: 'starting' }
  })

  for (const req of [
    { url: '/api/v1/snapshots' },
    { url: '/api/v1/vms/test/snapshots' },
    { method: 'POST' as const, url: '/api/v1/snapshot/create' },
    { url: '/api/v1/snapshot/create?snapshot_name=other' },
    { method: 'POST' as const, url: '/api/v1/snapshot/rollback' },
    { method: 'DELETE' as const, url: '/api/v1/snapshot/ready' },
    { url: '/api/v1/snapshot/delete/ready~20260101T000000.000Z' }
  ]) {
    const r = await call(app, req)
    assertError(t, r, 503, 'LIBVIRT_UNAVAILABLE')
    t.same(r.body, { error: { code: 'LIBVIRT_UNAVAILABLE', message: 'libvirt is not reachable' }, detail: 'libvirt is not reachable' }, `${req.url}: the registry text, no internals`)
  }

  // What needs no libvirt keeps working.
  const beat = await call(app, '/api/v1/heartbeat?seq=1')
  t.equal(beat.status, 200)
  t.equal(beat.body.details.state, 'healthy')
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.is_healthy, true)
  t.equal((await call(app, '/api/v1/vms')).status, 200)
  t.equal((await call(app, '/api/v1/events')).status, 200)
  t.equal((await call(app, '/api/v1/revert/disable?minutes=5')).status, 200)
  t.equal((await call(app, '/api/v1/revert/enable')).status, 200)

  // A technician's revert is accepted and waits for libvirt (retried with backoff, and at once
  // when the connection comes back); it is not refused.
  const revert = await call(app, { method: 'POST', url: '/api/v1/revert' })
  t.equal(revert.status, 202)
  await until('the first attempt failed', async () => (await events(app, 'revert_failed')).length === 1)
  t.match((await events(app, 'revert_failed'))[0], { reason: 'technician', error: /libvirt is not reachable/, retryInMs: 5000 })
  const after = (await call(app, '/api/v1/status')).body.watchdog
  t.equal(after.state, 'reverting')
  t.type(after.retry_at, 'string', 'a retry is scheduled')
})
