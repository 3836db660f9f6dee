// The availability figures through the real app (libvirt's test driver, fake clock): a hang with
// known times, then /api/v1/availability (JSON and CSV), /api/v1/vms/{vm}, /metrics, bad ranges,
// and the history file that survives a restart.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { historyPath } from '../../src/availability/history.ts'
import { assertError, build, call, T0 } from '../api/helpers.ts'

const config = { timezone: 'UTC', heartbeat_timeout: 10, startup_grace: 3600 }

/** Samples of the text exposition format: "name{a="1",b="2"}" -> value. */
function metrics (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(kvw_\S+?(?:\{.*\})?) (\S+)$/.exec(line)
    if (m) out.set(m[1]!, Number(m[2]))
  }
  return out
}

t.test('a hang with known times: the figures in every place they are shown', async (t) => {
  const { app, clock, run, dataDir } = await build(t, { config })
  const w = app.watchdogs.get('test')!
  // Healthy for 10 minutes, beating once a second.
  for (let i = 0; i < 600; i++) { w.heartbeat({ seq: i }); await run(1000) }
  const lastBeat = clock!.now() - 1000
  // The guest hangs: late at lastBeat + 5 s, reverted at + 10 s, then grace until a heartbeat.
  await run(30_000, () => w.view().state === 'grace')
  t.equal(w.view().lastRevert?.reason, 'heartbeat_timeout')
  await run(20_000)
  const back = clock!.now()
  w.heartbeat({ seq: 1000 })
  t.equal(w.view().state, 'healthy')
  for (let i = 0; i < 60; i++) { await run(1000); w.heartbeat({ seq: 1001 + i }) }
  const hang = back - (lastBeat + 5000)
  const now = clock!.now()

  const r = await call(app, `/api/v1/availability?from=${new Date(T0).toISOString()}`)
  t.equal(r.status, 200, r.res.body.slice(0, 300))
  t.equal(r.body.timezone, 'UTC')
  t.equal(r.body.to, new Date(now).toISOString(), 'to defaults to now')
  const vm = r.body.vms[0]
  t.equal(vm.vm, 'test')
  t.equal(vm.history_from, new Date(T0).toISOString())
  t.equal(vm.opening_seconds, (now - T0) / 1000, 'no schedule: every hour is an opening hour')
  t.equal(vm.lost_seconds.hang, hang / 1000, 'the hang: from the late mark to the first heartbeat after the revert')
  t.equal(vm.healthy_seconds + vm.lost_seconds.hang + vm.lost_seconds.vm_down + vm.lost_seconds.guest_request + vm.lost_seconds.maintenance + vm.lost_seconds.closed + vm.lost_seconds.unmonitored, vm.opening_seconds)
  t.equal(vm.ratio, Math.round(((now - T0 - hang) / (now - T0)) * 1e6) / 1e6)
  t.equal(vm.reverts, 1)
  t.same(vm.revert_marks.map((m: any) => [m.at, m.reason, m.cause]), [[new Date(lastBeat + 10_000).toISOString(), 'heartbeat_timeout', 'hang']])
  t.same(vm.strip.map((p: any) => p.kind), ['healthy', 'late', 'reverting', 'healthy'])

  const csv = await app.inject({ url: `/api/v1/availability?from=${new Date(T0).toISOString()}&format=csv` })
  t.equal(csv.statusCode, 200)
  t.match(csv.headers['content-type'], /^text\/csv/)
  const [head, row, end] = csv.body.split('\r\n')
  t.equal(head, 'vm,from,to,history_from,opening_seconds,healthy_seconds,ratio,lost_hang_seconds,lost_vm_down_seconds,lost_guest_request_seconds,lost_maintenance_seconds,lost_closed_seconds,lost_unmonitored_seconds,closed_seconds,reverts')
  t.equal(row, ['test', vm.from, vm.to, vm.history_from, vm.opening_seconds, vm.healthy_seconds, vm.ratio, hang / 1000, 0, 0, 0, 0, 0, 0, 1].join(','), 'CSV carries the JSON figures')
  t.equal(end, '')
  const accept = await app.inject({ url: `/api/v1/availability?from=${new Date(T0).toISOString()}`, headers: { accept: 'text/csv' } })
  t.equal(accept.body, csv.body, 'Accept: text/csv gives the same CSV')

  // Today (UTC midnight) started before the history: the same figures.
  const one = await call(app, '/api/v1/vms/test')
  t.equal(one.status, 200)
  t.same(one.body.availability.today.ratio, vm.ratio)
  t.same(one.body.availability.week.lost_seconds, vm.lost_seconds, 'the week (since Monday, T0 is a Monday) knows the same history')
  t.equal((await call(app, '/api/v1/vms')).body.vms[0].availability.today.healthy_seconds, vm.healthy_seconds)
  assertError(t, await call(app, '/api/v1/vms/nope'), 404, 'UNKNOWN_VM')

  const m = metrics((await app.inject({ url: '/metrics' })).body)
  t.equal(m.get('kvw_availability_ratio{vm="test",window="today"}'), (now - T0 - hang) / (now - T0))
  t.equal(m.get('kvw_downtime_seconds_total{vm="test",cause="hang"}'), hang / 1000)
  t.equal(m.get('kvw_downtime_seconds_total{vm="test",cause="vm_down"}'), 0)

  // The file has the changes only (not 600 heartbeats).
  await app.close()
  const lines = readFileSync(historyPath(dataDir, 'test'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(lines.map((l) => l.status), ['starting', 'healthy', 'late', 'reverting', 'grace', 'healthy', 'unmonitored'])
})

t.test('bad ranges: a clear 400 naming the field', async (t) => {
  const { app, run } = await build(t, { config })
  await run(1000)
  const bad = async (query: string, field: RegExp) => {
    const r = await call(app, `/api/v1/availability?${query}`)
    assertError(t, r, 400, 'BAD_REQUEST', field)
  }
  await bad('from=yesterday', /from/)
  await bad('to=2026-13-01', /to/)
  await bad('from=2026-11-23T10:00:00', /from/) // no offset: ambiguous
  await bad(`from=${new Date(T0 + 3_600_000).toISOString()}`, /from .* is in the future/)
  await bad(`from=${new Date(T0 - 3_600_000).toISOString()}&to=${new Date(T0 - 7_200_000).toISOString()}`, /to .* must be after from/)
  await bad('from=2024-01-01', /longer than 400 days/)
  await bad('format=xml', /format/)
  assertError(t, await call(app, '/api/v1/availability?vm=nope'), 404, 'UNKNOWN_VM', /nope/)
  const day = await call(app, '/api/v1/availability?from=2026-11-23&to=2026-11-24&vm=test')
  t.equal(day.status, 200)
  t.equal(day.body.from, '2026-11-23T00:00:00.000Z', 'a day is local midnight')
  t.equal(day.body.to, new Date(T0 + 1000).toISOString(), 'the future is cut at now')
})

t.test('opening hours: closed time is not in the ratio; the history survives a restart', async (t) => {
  // T0 is Monday 12:00 UTC; open 09:00-13:00 on Mondays.
  const schedule = { hours: { mon: '09:00-13:00' } }
  const first = await build(t, { config: { ...config, schedule }, manualClose: true })
  const w = first.app.watchdogs.get('test')!
  for (let i = 0; i < 3600; i++) { w.heartbeat({ seq: i }); await first.run(1000) }
  await first.run(30 * 60_000, () => w.view().state === 'maintenance')
  t.equal(w.view().maintenance?.reason, 'closed', 'closed at 13:00')
  const at = first.clock!.now()
  await first.app.close()

  const second = await build(t, { config: { ...config, schedule, data_dir: first.dataDir }, clock: { now: () => at + 3_600_000 }, timers: first.clock! })
  const r = await call(second.app, `/api/v1/availability?from=${new Date(T0).toISOString()}`)
  const vm = r.body.vms[0]
  t.equal(vm.opening_seconds, 3600, 'opening hours from T0: 12:00-13:00')
  t.equal(vm.healthy_seconds, 3600)
  t.equal(vm.ratio, 1)
  t.equal(vm.closed_seconds, (at + 3_600_000 - T0) / 1000 - 3600, 'the rest is closed, the service\'s hour away included')
  t.same(vm.strip.map((p: any) => p.kind), ['healthy', 'closed'])
})
