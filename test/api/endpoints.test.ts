// Every endpoint of the API (issue 3), GET and POST where both exist, on the real app with
// libvirt's test driver: status codes and the values that matter in each body.
import t from 'tap'
import { build, assertError, call, events, GUEST, until } from './helpers.ts'

const REVISION = /^ready~\d{8}T\d{6}\.\d{3}Z$/

t.test('heartbeat: GET and POST, with and without seq/status/vm; heartbeat/status has EVC\'s fields', async (t) => {
  const { app, clock: fake, run } = await build(t)
  const clock = fake!

  const before = await call(app, '/api/v1/heartbeat/status')
  t.equal(before.status, 200)
  t.same(before.body, {
    vm_name: 'test',
    enabled: true,
    timeout: 15,
    last_heartbeat: null,
    last_heartbeat_at: null,
    time_since_heartbeat: null,
    seconds_since_last: null,
    is_timed_out: false,
    has_received_heartbeat: false,
    is_healthy: false,
    state: 'starting',
    last_seq: null,
    last_status: null,
    last_source: null,
    heartbeats_total: 0
  }, 'no heartbeat yet: EVC\'s null last_heartbeat, not healthy')

  // From the host itself (the quick start's curl): loopback is not a guest network by default,
  // and its heartbeat counts all the same.
  const bare = await call(app, '/api/v1/heartbeat')
  t.equal(bare.status, 200)
  t.same(bare.body, { message: 'Heartbeat received', details: { vm: 'test', seq: null, state: 'healthy', requester: 'technician' } })

  const bareStatus = (await call(app, '/api/v1/heartbeat/status')).body
  t.equal(bareStatus.last_heartbeat, clock.now() / 1000, 'last_heartbeat is epoch seconds')
  t.equal(bareStatus.last_heartbeat_at, new Date(clock.now()).toISOString())
  t.equal(bareStatus.has_received_heartbeat, true)
  t.equal(bareStatus.is_healthy, true)
  t.equal(bareStatus.last_source, '127.0.0.1', 'the source address is recorded')

  await run(1000)
  const withFields = await call(app, { url: '/api/v1/heartbeat?seq=41&status=ok&vm=test', ...GUEST })
  t.equal(withFields.status, 200)
  t.same(withFields.body.details, { vm: 'test', seq: 41, state: 'healthy', requester: 'guest' })

  await run(1000)
  const post = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: { seq: 42, status: 'artwork running', vm: 'test' }, ...GUEST })
  t.equal(post.status, 200)
  t.same(post.body.details, { vm: 'test', seq: 42, state: 'healthy', requester: 'guest' })
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.last_status, 'artwork running', 'status from the JSON body')
  const postNoBody = await call(app, { method: 'POST', url: '/api/v1/heartbeat' })
  t.equal(postNoBody.status, 200, 'POST without a body (EVC\'s scripts send none)')
  const postQuery = await call(app, { method: 'POST', url: '/api/v1/heartbeat?seq=7', payload: { seq: 43 } })
  t.equal(postQuery.body.details.seq, 43, 'the JSON body wins over the query string')

  const lastBeat = clock.now()
  await run(2500)
  const status = (await call(app, '/api/v1/heartbeat/status')).body
  t.match(status, {
    enabled: true,
    timeout: 15,
    last_heartbeat: lastBeat / 1000,
    time_since_heartbeat: 2.5,
    seconds_since_last: 2.5,
    is_timed_out: false,
    has_received_heartbeat: true,
    is_healthy: true,
    state: 'healthy',
    last_seq: 43,
    last_status: null, // the last heartbeat sent none
    heartbeats_total: 5
  })

  await run(15_000) // 17.5 s since the last heartbeat: past the 15 s timeout (and reverted at 15 s)
  const late = (await call(app, '/api/v1/heartbeat/status')).body
  t.equal(late.time_since_heartbeat, 17.5)
  t.equal((await events(app, 'revert_started'))[0]?.reason, 'heartbeat_timeout', 'reverted at the timeout')
  t.equal(late.is_timed_out, true)
  t.equal(late.is_healthy, false)
})

t.test('revert/request: 202, the reason reaches /events; GET and POST', async (t) => {
  const { app } = await build(t)
  const r = await call(app, { url: '/api/v1/revert/request?reason=idle:15min', ...GUEST })
  t.equal(r.status, 202)
  t.same(r.body, { message: 'Revert started', details: { vm: 'test', reason: 'idle:15min', requester: 'guest', outcome: 'started' } })
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  const requests = await events(app, 'revert_request')
  t.equal(requests.length, 1)
  t.match(requests[0], { vm: 'test', kind: 'revert_request', reason: 'idle:15min', source: 'guest', outcome: 'started' })
  t.match((await events(app, 'revert_started'))[0], { reason: 'idle:15min', source: 'guest' })

  // The revert is done and no heartbeat came yet (grace): another request joins it.
  const post = await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason: 'process_missing' }, ...GUEST })
  t.equal(post.status, 202)
  t.same(post.body.details, { vm: 'test', reason: 'process_missing', requester: 'guest', outcome: 'coalesced' })
  t.equal(post.body.message, 'A revert is already under way')
  t.match((await events(app, 'revert_request'))[0], { reason: 'process_missing', outcome: 'coalesced' })
  t.equal((await events(app, 'revert_started')).length, 1, 'still one revert')
})

t.test('revert/request without a reason: guest_request', async (t) => {
  const { app } = await build(t)
  const r = await call(app, { method: 'POST', url: '/api/v1/revert/request', ...GUEST })
  t.equal(r.status, 202)
  t.same(r.body.details, { vm: 'test', reason: 'guest_request', requester: 'guest', outcome: 'started' })
})

t.test('vm/restart (EVC\'s guest path): a guest revert, GET and POST', async (t) => {
  for (const method of ['GET', 'POST'] as const) {
    await t.test(method, async (t) => {
      const { app, lifecycle } = await build(t)
      const r = await call(app, { method, url: '/api/v1/vm/restart', ...GUEST })
      t.equal(r.status, 202)
      t.same(r.body.details, { vm: 'test', reason: 'guest_restart_request', requester: 'guest', outcome: 'started' })
      await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
      t.match((await events(app, 'revert_started'))[0], { reason: 'guest_restart_request', source: 'guest' })
      t.same(lifecycle.filter((e) => e.domain === 'test').map((e) => `${e.type}/${e.detailName}`), ['stopped/from_snapshot', 'started/from_snapshot'], 'libvirt reverted the VM')
    })
  }
})

t.test('vm/stop: the VM really stops, maintenance "stopped", no automatic revert; vm/start brings it back', async (t) => {
  // A fast safety-net poll and a short timeout: if a stopped VM could be reverted, it would be.
  const { app, lifecycle, run } = await build(t, { config: { heartbeat_check_interval: 0.05, heartbeat_timeout: 1, startup_grace: 0, post_revert_grace: 1 } })
  t.equal((await call(app, '/api/v1/heartbeat')).status, 200)

  const stop = await call(app, { method: 'POST', url: '/api/v1/vm/stop' })
  t.equal(stop.status, 202)
  t.same(stop.body.details, { vm: 'test' })
  await until('the VM is shut off', async () => (await app.hypervisor.domainState('test')).state === 'shutoff')

  const status = (await call(app, '/api/v1/status')).body
  t.equal(status.vm_state, 'shut off', 'virsh\'s words, as EVC reported them')
  t.equal(status.domain_state, 'shutoff', 'libvirt\'s state name')
  t.equal(status.vm_is_running, false)
  t.equal(status.watchdog.state, 'maintenance')
  t.equal(status.watchdog.maintenance.reason, 'stopped')
  t.equal(status.watchdog.maintenance.until, null, 'a manual stop has no expiry')
  t.equal(status.auto_revert_enabled, false)
  t.match((await events(app, 'vm_stop'))[0], { reason: 'technician' })

  // Longer than the heartbeat timeout, many polls: nothing reverts the stopped VM.
  await run(10_000)
  t.equal((await app.hypervisor.domainState('test')).state, 'shutoff', 'still shut off 10 s later')
  t.equal((await events(app, 'revert_started')).length, 0, 'no revert')
  t.equal(lifecycle.filter((e) => e.type === 'started').length, 0)
  assertError(t, await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST }), 409, 'CONFLICT', /maintenance \(stopped\)/)

  const start = await call(app, '/api/v1/vm/start')
  t.equal(start.status, 202)
  t.same(start.body.details, { vm: 'test', outcome: 'started' })
  await until('the VM runs again', async () => (await app.hypervisor.domainState('test')).state === 'running')
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  const after = (await call(app, '/api/v1/status')).body
  t.equal(after.watchdog.maintenance, null, 'the stop is cleared')
  t.equal(after.auto_revert_enabled, true)
  t.equal(after.watchdog.last_revert.reason, 'technician_start')
  t.equal(after.watchdog.last_revert.source, 'technician')
})

t.test('GET vm/stop works too (EVC\'s browser path)', async (t) => {
  const { app } = await build(t)
  t.equal((await call(app, '/api/v1/vm/stop')).status, 202)
  await until('the VM is shut off', async () => (await app.hypervisor.domainState('test')).state === 'shutoff')
  t.equal((await call(app, '/api/v1/status')).body.watchdog.maintenance.reason, 'stopped')
})

t.test('POST /revert: a technician\'s revert; /status reports it with reason and duration', async (t) => {
  const { app, lifecycle } = await build(t)
  const r = await call(app, { method: 'POST', url: '/api/v1/revert?reason=screen_frozen' })
  t.equal(r.status, 202)
  t.same(r.body, { message: 'Revert started', details: { vm: 'test', reason: 'screen_frozen', outcome: 'started' } })
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  const status = (await call(app, '/api/v1/status')).body
  t.match(status.watchdog.last_revert, { reason: 'screen_frozen', source: 'technician', escalated: false, attempts: 1, error: null })
  t.type(status.watchdog.last_revert.duration_ms, 'number')
  t.ok(status.watchdog.last_revert.duration_ms >= 0)
  t.equal(status.watchdog.counters.reverts, 1)
  t.same(status.watchdog.counters.by_source, { technician: 1 })
  t.equal(status.watchdog.state, 'grace', 'waiting for the first heartbeat after the revert')
  t.equal(lifecycle.filter((e) => e.domain === 'test' && e.detailName === 'from_snapshot').length, 2)

  const noReason = await call(app, { method: 'POST', url: '/api/v1/revert' })
  t.equal(noReason.status, 202)
  t.equal(noReason.body.details.reason, 'technician')

  assertError(t, await call(app, '/api/v1/revert'), 404, 'NOT_FOUND', /GET \/api\/v1\/revert/)
})

t.test('revert/disable?minutes= and revert/enable: maintenance until, GET and POST', async (t) => {
  const { app, clock: fake } = await build(t)
  const clock = { get t () { return fake!.now() } }
  const until10 = new Date(clock.t + 10 * 60_000).toISOString()

  const off = await call(app, { method: 'POST', url: '/api/v1/revert/disable?minutes=10' })
  t.equal(off.status, 200)
  t.same(off.body, { message: `Auto-revert disabled until ${until10}`, details: { vm: 'test', auto_revert_enabled: false, until: until10 } })
  let status = (await call(app, '/api/v1/status')).body
  t.equal(status.auto_revert_enabled, false)
  t.equal(status.watchdog.state, 'maintenance')
  t.match(status.watchdog.maintenance, { reason: 'technician', until: until10 })
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.enabled, false, 'EVC\'s enabled flag')
  t.match((await events(app, 'maintenance_on'))[0], { reason: 'technician', until: clock.t + 10 * 60_000 })

  const on = await call(app, '/api/v1/revert/enable')
  t.equal(on.status, 200)
  t.same(on.body.details, { vm: 'test', auto_revert_enabled: true })
  status = (await call(app, '/api/v1/status')).body
  t.equal(status.auto_revert_enabled, true)
  t.equal(status.watchdog.maintenance, null)

  const byDefault = await call(app, '/api/v1/revert/disable')
  t.equal(byDefault.body.details.until, new Date(clock.t + 30 * 60_000).toISOString(), 'maintenance_minutes (30) by default')
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/enable' })).status, 200)

  const fractional = await call(app, '/api/v1/revert/disable?minutes=0.5')
  t.equal(fractional.body.details.until, new Date(clock.t + 30_000).toISOString())

  const indefinite = await call(app, '/api/v1/revert/disable?indefinite=true')
  t.equal(indefinite.status, 200)
  t.equal(indefinite.body.details.until, null)
  t.equal((await call(app, '/api/v1/status')).body.watchdog.maintenance.until, null)
})

t.test('maintenance from revert/disable runs out on its own', async (t) => {
  const { app, run } = await build(t)
  const r = await call(app, '/api/v1/revert/disable?minutes=0.005') // 300 ms
  t.equal(r.status, 200)
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.enabled, false)
  await run(250)
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.enabled, false, 'still off 250 ms in')
  await run(50)
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.enabled, true, 'back on at 300 ms')
  t.equal((await call(app, '/api/v1/status')).body.watchdog.maintenance, null)
  t.match((await events(app, 'maintenance_expired'))[0], { vm: 'test' })
})

t.test('POST /watchdog/reset: answers with the state (GET is not a route)', async (t) => {
  const { app } = await build(t)
  const r = await call(app, { method: 'POST', url: '/api/v1/watchdog/reset' })
  t.equal(r.status, 200)
  t.same(r.body, { message: 'Watchdog reset', details: { vm: 'test', state: 'starting' } })
  assertError(t, await call(app, '/api/v1/watchdog/reset'), 404, 'NOT_FOUND')
})

t.test('snapshots: list, create (previous kept as revision), rollback, delete', async (t) => {
  const { app } = await build(t)

  const list = await call(app, '/api/v1/snapshots')
  t.equal(list.status, 200)
  t.equal(list.body.vm_name, 'test')
  t.equal(list.body.snapshot_name, 'ready')
  t.equal(list.body.snapshots.length, 1, 'the one the app created at start (test driver)')
  t.type(list.body.snapshots[0], 'string', 'snapshots: names, as exhibition-vm-controller')
  const first = list.body.snapshot_details[0]
  t.equal(first.name, list.body.snapshots[0])
  t.match(first, { name: REVISION, revision_of: 'ready', is_current: true, has_memory: true, state: 'running', is_target: true })
  t.equal(list.body.snapshot_target, first.name)
  t.ok(!Number.isNaN(Date.parse(first.creation_time)))

  const created = await call(app, { method: 'POST', url: '/api/v1/snapshot/create' })
  t.equal(created.status, 201)
  let names: string[] = (await call(app, '/api/v1/snapshots')).body.snapshots
  t.equal(names.length, 2)
  const second = names.find((n: string) => n !== first.name)!
  t.match(second, REVISION)
  t.same(created.body.details, { vm: 'test', snapshot: 'ready', created: second, previous_kept_as: first.name, replaced: false, has_memory: true })
  t.ok(second > first.name, 'the new revision sorts after the old one')
  t.equal((await call(app, '/api/v1/status')).body.snapshot_target, second, 'a revert now uses the new one')
  t.match((await events(app, 'snapshot_create'))[0], { reason: 'technician', snapshot: 'ready', outcome: 'ok', revision: first.name })

  const other = await call(app, '/api/v1/snapshot/create?snapshot_name=before-update.2')
  t.equal(other.status, 201, 'GET works too')
  t.same(other.body.details, { vm: 'test', snapshot: 'before-update.2', created: 'before-update.2', previous_kept_as: null, replaced: false, has_memory: true }, 'another name: exactly that name')

  const rolled = await call(app, { method: 'POST', url: '/api/v1/snapshot/rollback' })
  t.equal(rolled.status, 200)
  t.same(rolled.body.details, { vm: 'test', snapshot: 'ready', restored: first.name, discarded: second })
  t.equal((await call(app, '/api/v1/status')).body.snapshot_target, first.name)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/snapshot/rollback' }), 409, 'NO_REVISION', /no earlier revision/)
  assertError(t, await call(app, '/api/v1/snapshot/rollback?snapshot_name=nothing-here'), 404, 'SNAPSHOT_NOT_FOUND')

  // Delete: the snapshot reverts use needs force; any other one goes at once.
  assertError(t, await call(app, { method: 'DELETE', url: `/api/v1/snapshot/${first.name}` }), 409, 'CONFLICT')
  await call(app, '/api/v1/snapshot/create') // ready has two versions again: `first` is now the older one
  const del = await call(app, { method: 'DELETE', url: `/api/v1/snapshot/${first.name}` })
  t.equal(del.status, 200)
  t.equal(del.body.details.snapshot, first.name)
  const otherDeleted = await call(app, '/api/v1/snapshot/delete/before-update.2')
  t.equal(otherDeleted.status, 200, 'GET delete of a snapshot reverts do not use needs no force')
  t.same(otherDeleted.body.details, { vm: 'test', snapshot: 'before-update.2', active: null })
  names = (await call(app, '/api/v1/snapshots')).body.snapshots
  t.equal(names.length, 1)
  t.notOk(names.includes(first.name))
  const forced = await call(app, `/api/v1/snapshot/delete/${names[0]!}?force=true`)
  t.equal(forced.status, 200, 'GET delete with force removes the active (only) version')
  t.same((await call(app, '/api/v1/snapshots')).body.snapshots, [])
  assertError(t, await call(app, { method: 'DELETE', url: `/api/v1/snapshot/${first.name}` }), 404, 'SNAPSHOT_NOT_FOUND')
  t.equal((await events(app, 'snapshot_delete')).length, 3)
})

t.test('/status: VM, snapshot, watchdog state and counters', async (t) => {
  const { app } = await build(t)
  const r = await call(app, '/api/v1/status')
  t.equal(r.status, 200)
  t.match(r.body, {
    service: 'kiosk-vm-watchdog',
    libvirt: { uri: 'test:///default', connected: true },
    vm_name: 'test',
    vm_state: 'running',
    vm_is_running: true,
    snapshot_name: 'ready',
    snapshot_exists: true,
    snapshot_target: REVISION,
    snapshot_has_memory: true,
    snapshot_problems: [],
    auto_revert_enabled: true,
    watchdog: {
      state: 'starting',
      maintenance: null,
      exhausted: null,
      escalated: false,
      recent_reverts: 0,
      max_reverts: 5,
      revert_in_flight: false,
      last_revert: null,
      counters: { reverts: 0, by_reason: {}, by_source: {}, requests: {}, escalations: 0, exhaustions: 0 }
    },
    heartbeat: { vm_name: 'test', has_received_heartbeat: false }
  })
  await call(app, '/api/v1/heartbeat?seq=1')
  const after = (await call(app, '/api/v1/status')).body
  t.equal(after.watchdog.state, 'healthy')
  t.equal(after.heartbeat.last_seq, 1)

  await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })
  await until('the revert finished', async () => typeof (await call(app, '/api/v1/status')).body.watchdog.last_revert?.duration_ms === 'number')
  const reverted = (await call(app, '/api/v1/status')).body.watchdog
  t.match(reverted.last_revert, { reason: 'idle', source: 'guest', attempts: 1 })
  t.type(reverted.last_revert.duration_ms, 'number')
  t.equal(reverted.counters.reverts, 1)
  t.same(reverted.counters.by_reason, { 'guest:idle': 1 })
  t.same(reverted.counters.requests, { started: 1 })
  t.equal(reverted.recent_reverts, 1)
})

t.test('/events?limit=: newest first, limited', async (t) => {
  const { app } = await build(t)
  for (const minutes of [1, 2, 3]) {
    await call(app, `/api/v1/revert/disable?minutes=${minutes}`)
    await call(app, '/api/v1/revert/enable')
  }
  const all = await call(app, '/api/v1/events')
  t.equal(all.status, 200)
  t.same(all.body.events.map((e: { kind: string }) => e.kind), ['maintenance_off', 'maintenance_on', 'maintenance_off', 'maintenance_on', 'maintenance_off', 'maintenance_on'])
  const two = await call(app, '/api/v1/events?limit=2')
  t.equal(two.body.events.length, 2)
  t.same(two.body.events, all.body.events.slice(0, 2))
  const ons = await call(app, '/api/v1/events?kind=maintenance_on&limit=1')
  t.equal(ons.body.events.length, 1)
  t.equal(ons.body.events[0].until - Date.parse(ons.body.events[0].ts), 3 * 60_000, 'the newest one (3 minutes)')
  t.same((await call(app, '/api/v1/events?vm=other')).body.events, [], 'filter by VM')
  t.equal((await call(app, '/api/v1/vms/test/events?limit=3')).body.events.length, 3, 'per-VM path')
})

t.test('/vms lists the watched VM', async (t) => {
  const { app } = await build(t)
  await call(app, '/api/v1/heartbeat')
  const r = await call(app, '/api/v1/vms')
  t.equal(r.status, 200)
  t.equal(r.body.default_vm, 'test')
  t.equal(r.body.vms.length, 1)
  t.match(r.body.vms[0], { name: 'test', state: 'healthy', auto_revert_enabled: true, vm_running: true })
})

t.test('per-VM prefix /api/v1/vms/test/...; an unknown VM is 404 UNKNOWN_VM', async (t) => {
  const { app } = await build(t)
  const beat = await call(app, { method: 'POST', url: '/api/v1/vms/test/heartbeat', payload: { seq: 9 } })
  t.equal(beat.status, 200)
  t.equal(beat.body.details.vm, 'test')
  t.equal((await call(app, '/api/v1/vms/test/status')).body.heartbeat.last_seq, 9)
  t.equal((await call(app, '/api/v1/vms/test/heartbeat/status')).body.last_seq, 9)
  t.equal((await call(app, '/api/v1/vms/test/snapshots')).body.snapshots.length, 1)
  const disable = await call(app, '/api/v1/vms/test/revert/disable?minutes=5')
  t.equal(disable.status, 200)
  t.equal((await call(app, '/api/v1/status')).body.auto_revert_enabled, false, 'the same VM as the default paths')

  for (const req of [
    { url: '/api/v1/vms/nope/status' },
    { url: '/api/v1/vms/nope/heartbeat' },
    { method: 'POST' as const, url: '/api/v1/vms/nope/revert/request?reason=x' },
    { method: 'POST' as const, url: '/api/v1/vms/nope/revert' },
    { url: '/api/v1/vms/nope/snapshots' },
    { url: '/api/v1/heartbeat?vm=nope' },
    { method: 'POST' as const, url: '/api/v1/heartbeat', payload: { vm: 'nope' } },
    { url: '/api/v1/status?vm=nope' }
  ]) {
    assertError(t, await call(app, req), 404, 'UNKNOWN_VM', /No VM named "nope".*watched: test/)
  }
})

t.test('EVC\'s smaller shapes: GET / has message and details.version; /openapi.json and /redoc answer; vm_state in virsh\'s words', async (t) => {
  const { app } = await build(t)
  const root = await call(app, { url: '/', headers: { accept: 'application/json' } })
  t.equal(root.status, 200)
  t.type(root.body.message, 'string')
  t.match(root.body.details, { version: /^\d+\.\d+\.\d+/, docs: '/docs', web_ui: '/ui/' })
  t.equal(root.body.details.version, root.body.version)

  const openapi = await call(app, '/openapi.json')
  t.equal(openapi.status, 200)
  t.equal(openapi.body.openapi, '3.0.3')
  t.ok(openapi.body.paths['/api/v1/vm/restart'], 'the same document as /docs/json')
  t.same(openapi.body, (await call(app, '/docs/json')).body)
  const redoc = await app.inject('/redoc')
  t.equal(redoc.statusCode, 302)
  t.equal(redoc.headers.location, '/docs', 'FastAPI\'s /redoc leads to this service\'s API page')

  const status = (await call(app, '/api/v1/status')).body
  t.same([status.vm_state, status.domain_state], ['running', 'running'])
})

t.test('heartbeat/status: is_timed_out is false in maintenance (as EVC), true again after it', async (t) => {
  const { app, run } = await build(t, { config: { startup_grace: 0 } })
  t.equal((await call(app, { url: '/api/v1/heartbeat', ...GUEST })).status, 200)
  t.equal((await call(app, '/api/v1/revert/disable?minutes=1')).status, 200)
  await run(20_000) // past heartbeat_timeout (15 s)
  const during = (await call(app, '/api/v1/heartbeat/status')).body
  t.match(during, { enabled: false, is_timed_out: false, has_received_heartbeat: true, is_healthy: false, time_since_heartbeat: 20 })
  t.equal((await call(app, '/api/v1/status')).body.heartbeat.is_timed_out, false)
  t.equal((await call(app, '/api/v1/revert/enable')).status, 200)
  const after = (await call(app, '/api/v1/heartbeat/status')).body
  t.match(after, { enabled: true, is_timed_out: true })
})
