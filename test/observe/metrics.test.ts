// GET /metrics on the real app (libvirt's test driver, real watchdogs): each kvw_ series, values
// computed at scrape time with the app's clock, reverts counted from the watchdog's events.
import t from 'tap'
import { build, TOKEN } from '../helpers/app.ts'
import type { RevertEvent } from '../../src/plugins/observe.ts'

/** Samples of the text exposition format: "name{a="1",b="2"}" -> value. */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line)
    if (m) out.set(m[1]!, Number(m[2]))
  }
  return out
}

t.test('every kvw_ series, from the watchdog and libvirt', async (t) => {
  let now = Date.parse('2026-11-23T12:00:00Z')
  const { app } = await build(t, { clock: { now: () => now } })
  const res = await app.inject({ url: '/metrics', remoteAddress: '192.168.1.50' })
  t.equal(res.statusCode, 200, 'read access: any address')
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  let m = parse(res.body)
  t.equal(m.get('kvw_libvirt_connected'), 1)
  t.equal(m.get('kvw_info{version="0.1.0"}'), 1)
  t.equal(m.get('kvw_watchdog_state{vm="test",state="starting"}'), 1)
  t.equal(m.get('kvw_watchdog_state{vm="test",state="healthy"}'), 0)
  t.equal(m.get('kvw_vm_state{vm="test",state="running"}'), 1)
  t.equal(m.get('kvw_vm_state{vm="test",state="unknown"}'), 0)
  t.equal(m.get('kvw_exhausted{vm="test"}'), 0)
  t.equal(m.get('kvw_maintenance{vm="test"}'), 0)
  t.equal(m.get('kvw_heartbeats_total{vm="test"}'), 0)
  t.notOk(m.has('kvw_heartbeat_age_seconds{vm="test"}'), 'no age before the first heartbeat')
  t.ok(m.has('kvw_process_cpu_user_seconds_total'), 'default process metrics, kvw_ prefix')
  t.ok(m.has('kvw_nodejs_eventloop_lag_seconds'))
  t.notOk([...m.keys()].some((k) => k.startsWith('process_') || k.startsWith('nodejs_')), 'nothing without the prefix')

  const w = app.watchdogs.get('test')!
  for (let seq = 1; seq <= 3; seq++) w.heartbeat({ seq })
  now += 4_500
  m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_heartbeats_total{vm="test"}'), 3)
  t.equal(m.get('kvw_heartbeat_age_seconds{vm="test"}'), 4.5, 'age computed at scrape time')
  t.equal(m.get('kvw_watchdog_state{vm="test",state="healthy"}'), 1)
  t.equal(m.get('kvw_watchdog_state{vm="test",state="starting"}'), 0)
  now += 1_000
  m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_heartbeat_age_seconds{vm="test"}'), 5.5)

  await w.setMaintenance(30)
  m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_maintenance{vm="test"}'), 1)
  t.equal(m.get('kvw_watchdog_state{vm="test",state="maintenance"}'), 1)
  await w.clearMaintenance()
})

t.test('a revert is counted by reason and outcome, with its duration', async (t) => {
  const { app } = await build(t)
  const w = app.watchdogs.get('test')!
  const finished = new Promise<RevertEvent>((resolve) => {
    w.on('revert', (e) => { if (e.phase === 'finish') resolve(e) })
  })
  t.equal(w.requestRevert('metrics_test', 'technician').outcome, 'started')
  const event = await finished
  t.equal(event.outcome, 'succeeded')
  const m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_reverts_total{vm="test",reason="metrics_test",outcome="succeeded"}'), 1)
  t.equal(m.get('kvw_revert_duration_seconds_count{vm="test"}'), 1)
  t.equal(m.get('kvw_revert_duration_seconds_bucket{le="120",vm="test"}'), 1)
  t.equal(m.get('kvw_revert_duration_seconds_sum{vm="test"}'), event.durationMs! / 1000)
})

t.test('kvw_reverts_started_total: a hang\'s revert counts as auto (the storm rule counts it)', async (t) => {
  const { app, run } = await build(t, { config: { heartbeat_timeout: 5, startup_grace: 5 } })
  const w = app.watchdogs.get('test')!
  w.heartbeat({ seq: 1 })
  t.equal(w.view().state, 'healthy')
  const reverts: string[] = []
  w.on('revert', (e) => { if (e.phase === 'start') reverts.push(e.source) })
  await run(20_000, () => reverts.length > 0)
  t.same(reverts, ['auto'], 'no heartbeat for heartbeat_timeout: an automatic revert')
  const m = parse((await app.inject({ url: '/metrics' })).body)
  t.same(['auto', 'guest', 'technician', 'schedule'].map((source) => m.get(`kvw_reverts_started_total{vm="test",source="${source}"}`)), [1, 0, 0, 0])
})

t.test('kvw_reverts_started_total: 0 before any revert, then one per revert however many attempts it takes, by source', async (t) => {
  const { app, run } = await build(t, { config: { revert_retry_initial: 1 } })
  const w = app.watchdogs.get('test')!
  const startedBy = async (source: string) => parse((await app.inject({ url: '/metrics' })).body).get(`kvw_reverts_started_total{vm="test",source="${source}"}`)
  const started = async () => await startedBy('technician')
  t.same(await Promise.all(['auto', 'guest', 'technician', 'schedule'].map(startedBy)), [0, 0, 0, 0],
    'there from 0 for every source before any revert: the storm rule\'s increase() counts the first one')
  const events: string[] = []
  w.on('revert', (e) => events.push(`${e.phase} ${e.attempt}${e.outcome ? ` ${e.outcome}` : ''}`))
  const finished = (outcome: string) => () => events.some((e) => e.startsWith('finish') && e.endsWith(outcome))

  // Revert 1: its first attempt fails before libvirt's revert call (the snapshot is gone), so
  // that attempt has no start event; the retry, once the snapshot is back, succeeds.
  const vm = app.vms.get('test')!
  await app.hypervisor.deleteSnapshot('test', await vm.snapshots.resolveRevertTarget('test', 'ready'))
  t.equal(w.requestRevert('metrics_test', 'technician').outcome, 'started')
  await run(500, finished('failed'))
  t.equal(await started(), 1, 'counted when its first attempt failed')
  await vm.snapshots.ensure('test', 'ready')
  await run(3000, finished('succeeded'))
  t.same(events, ['finish 1 failed', 'start 2', 'finish 2 succeeded'])
  t.equal(await started(), 1, 'its retry is the same revert')

  // Revert 2: libvirt's revert call itself fails once (after the start event), then the retry works.
  events.length = 0
  const h = app.hypervisor
  const revertToSnapshot = h.revertToSnapshot.bind(h)
  let failures = 1
  h.revertToSnapshot = async (domain, snapshot) => {
    if (failures-- > 0) throw new Error('injected: the libvirt revert call failed')
    return await revertToSnapshot(domain, snapshot)
  }
  t.teardown(() => { h.revertToSnapshot = revertToSnapshot })
  w.heartbeat({ seq: 1 }) // the guest is back after revert 1
  t.equal(w.view().state, 'healthy')
  t.equal(w.requestRevert('metrics_test', 'technician').outcome, 'started')
  await run(3000, finished('succeeded'))
  t.same(events, ['start 1', 'finish 1 failed', 'start 2', 'finish 2 succeeded'])
  const m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_reverts_started_total{vm="test",source="technician"}'), 2, 'two reverts, four attempts')
  t.same(['auto', 'guest', 'schedule'].map((source) => m.get(`kvw_reverts_started_total{vm="test",source="${source}"}`)), [0, 0, 0],
    'a technician\'s, under its own source: the storm rule leaves them out')

  // Revert 3: the guest asks.
  w.heartbeat({ seq: 2 })
  t.equal(w.requestRevert('metrics_test', 'guest').outcome, 'started')
  await run(3000, () => w.view().state !== 'reverting')
  t.same([await startedBy('guest'), await startedBy('technician')], [1, 2], 'the guest\'s request counts as guest')
  t.equal(m.get('kvw_reverts_total{vm="test",reason="metrics_test",outcome="failed"}'), 2, 'kvw_reverts_total counts each attempt\'s end')
  t.equal(m.get('kvw_reverts_total{vm="test",reason="metrics_test",outcome="succeeded"}'), 2)
})

t.test('guest-chosen reasons cannot grow the label set without bound', async (t) => {
  const { app } = await build(t)
  const w = app.watchdogs.get('test')!
  for (let i = 0; i < 25; i++) w.emit('revert', { vm: 'test', phase: 'finish', reason: `reason_${i}`, source: 'guest', escalate: false, attempt: 1, deadlineLagMs: null, outcome: 'succeeded', durationMs: 1000 })
  const m = parse((await app.inject({ url: '/metrics' })).body)
  const reasons = [...m.keys()].filter((k) => k.startsWith('kvw_reverts_total{'))
  t.equal(reasons.length, 21, '20 distinct reasons, then "other"')
  t.equal(m.get('kvw_reverts_total{vm="test",reason="other",outcome="succeeded"}'), 5)
})

t.test('libvirt gone: connected 0, VM state unknown', async (t) => {
  const { app } = await build(t)
  await app.hypervisor.close()
  const m = parse((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_libvirt_connected'), 0)
  t.equal(m.get('kvw_vm_state{vm="test",state="unknown"}'), 1)
  t.equal(m.get('kvw_vm_state{vm="test",state="running"}'), 0)
})

t.test('read_requires_token protects /metrics too', async (t) => {
  const { app } = await build(t, { config: { security: { admin_token: TOKEN, read_requires_token: true } } })
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 401)
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200)
})

t.test('two apps in one process keep separate registries', async (t) => {
  const { app: a } = await build(t)
  const { app: b } = await build(t)
  a.watchdogs.get('test')!.heartbeat({ seq: 1 })
  t.equal(parse((await a.inject({ url: '/metrics' })).body).get('kvw_heartbeats_total{vm="test"}'), 1)
  t.equal(parse((await b.inject({ url: '/metrics' })).body).get('kvw_heartbeats_total{vm="test"}'), 0)
})
