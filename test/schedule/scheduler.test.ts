// The Scheduler runtime with a fake clock: what it tells the watchdog at start and at each
// change; then with the real Watchdog on libvirt's test driver, closing shuts the VM down and
// opening reverts it.
import t, { type Test } from 'tap'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VM_DEFAULTS, type VmConfig } from '../../src/config/schema.ts'
import { newWatchdog } from '../helpers/watchdog.ts'
import { openHypervisor, snapshotXml } from '../../src/libvirt/index.ts'
import { scheduleSchema } from '../../src/schedule/config.ts'
import { MAX_WAIT_MS, PREVENTIVE_REVERT_REASON, Scheduler } from '../../src/schedule/scheduler.ts'
import { AuditLog, StateFile } from '../../src/store/index.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

const BERLIN = 'Europe/Berlin'
const weekdays = { mon: '09:00-18:00', tue: '09:00-18:00', wed: '09:00-18:00', thu: '09:00-18:00', fri: '09:00-18:00' }

interface Call { what: string, at: string }

function recording (t: Test, input: unknown, start: string) {
  const clock = new FakeClock(new Date(start))
  const calls: Call[] = []
  const at = () => new Date(clock.now()).toISOString()
  const scheduler = new Scheduler({
    vm: 'exhibit',
    schedule: scheduleSchema.parse(input),
    timezone: BERLIN,
    clock,
    timers: clock,
    target: {
      schedule: (open) => { calls.push({ what: open ? 'open' : 'close', at: at() }) },
      requestRevert: (reason, source) => { calls.push({ what: `revert:${reason}:${source}`, at: at() }) }
    }
  })
  t.teardown(() => scheduler.stop())
  return { clock, calls, scheduler }
}

t.test('started mid-day: open at once, closes at 18:00, opens next morning', async (t) => {
  const { clock, calls, scheduler } = recording(t, { hours: weekdays }, '2026-11-23T11:00:00Z') // Monday 12:00 CET
  scheduler.start()
  t.same(calls, [{ what: 'open', at: '2026-11-23T11:00:00.000Z' }], 'brought to open at start')
  t.match(scheduler.view(), { timezone: BERLIN, open: true, next_change: '2026-11-23T17:00:00.000Z', next_action: { kind: 'close', at: '2026-11-23T17:00:00.000Z' } })
  clock.advanceTo(new Date('2026-11-23T16:59:59Z'))
  t.equal(calls.length, 1, 'nothing before 18:00')
  clock.advanceTo(new Date('2026-11-24T12:00:00Z'))
  t.same(calls.slice(1), [{ what: 'close', at: '2026-11-23T17:00:00.000Z' }, { what: 'open', at: '2026-11-24T08:00:00.000Z' }], 'on the minute')
  t.match(scheduler.view(), { last_action: { kind: 'open', at: '2026-11-24T08:00:00.000Z' } })
  clock.advanceTo(new Date('2026-11-30T12:00:00Z'))
  const expected = [{ what: 'open', at: '2026-11-23T11:00:00.000Z' }]
  for (const day of [23, 24, 25, 26, 27]) {
    if (day > 23) expected.push({ what: 'open', at: `2026-11-${day}T08:00:00.000Z` })
    expected.push({ what: 'close', at: `2026-11-${day}T17:00:00.000Z` })
  }
  expected.push({ what: 'open', at: '2026-11-30T08:00:00.000Z' })
  t.same(calls, expected, 'one close and one open per weekday, none at the weekend, nothing else')
})

t.test('started at night: closed at once', async (t) => {
  const { clock, calls, scheduler } = recording(t, { hours: weekdays }, '2026-11-23T23:30:00Z')
  scheduler.start()
  t.same(calls, [{ what: 'close', at: '2026-11-23T23:30:00.000Z' }])
  t.equal(clock.pending, 1, 'one timer')
  scheduler.stop()
  t.equal(clock.pending, 0, 'stop clears it')
  clock.advance(86_400_000)
  t.equal(calls.length, 1)
})

t.test('closed date: no opening that day', async (t) => {
  const { clock, calls, scheduler } = recording(t, { hours: weekdays, closed_dates: ['2026-12-24'] }, '2026-12-23T20:00:00Z')
  scheduler.start()
  clock.advanceTo(new Date('2026-12-26T00:00:00Z'))
  t.same(calls, [
    { what: 'close', at: '2026-12-23T20:00:00.000Z' },
    { what: 'open', at: '2026-12-25T08:00:00.000Z' },
    { what: 'close', at: '2026-12-25T17:00:00.000Z' }
  ], 'closed on the 24th (a Thursday), open on the 25th')
})

t.test('DST: spring forward with an opening at 02:30, fall back with a closing at 02:30', async (t) => {
  let r = recording(t, { hours: { sun: '02:30-18:00' } }, '2026-03-28T12:00:00Z')
  r.scheduler.start()
  r.clock.advanceTo(new Date('2026-03-30T00:00:00Z'))
  t.same(r.calls, [
    { what: 'close', at: '2026-03-28T12:00:00.000Z' },
    { what: 'open', at: '2026-03-29T01:30:00.000Z' }, // 02:30 does not exist: 03:30 CEST
    { what: 'close', at: '2026-03-29T16:00:00.000Z' } // 18:00 CEST
  ])
  r = recording(t, { hours: { sun: '00:00-02:30' } }, '2026-10-24T21:00:00Z')
  r.scheduler.start()
  r.clock.advanceTo(new Date('2026-10-26T00:00:00Z'))
  t.same(r.calls, [
    { what: 'close', at: '2026-10-24T21:00:00.000Z' },
    { what: 'open', at: '2026-10-24T22:00:00.000Z' }, // midnight CEST
    { what: 'close', at: '2026-10-25T00:30:00.000Z' } // the first 02:30 (CEST); not again an hour later
  ])
})

t.test('preventive revert: once a day', async (t) => {
  const { clock, calls, scheduler } = recording(t, { preventive_revert: '06:30' }, '2026-11-23T12:00:00Z')
  scheduler.start()
  t.same(calls, [{ what: 'open', at: '2026-11-23T12:00:00.000Z' }])
  clock.advanceTo(new Date('2026-11-26T12:00:00Z'))
  t.same(calls.slice(1), ['24', '25', '26'].map((d) => ({ what: `revert:${PREVENTIVE_REVERT_REASON}:schedule`, at: `2026-11-${d}T05:30:00.000Z` })))
})

t.test('preventive_revert_cron on the fake clock: at the cron times in the zone, over both DST nights', async (t) => {
  const revert = `revert:${PREVENTIVE_REVERT_REASON}:schedule`
  // Always open; 03:00 every day, and 02:30 (in the spring-forward gap, and repeated at fall back).
  let r = recording(t, { preventive_revert_cron: '0 3 * * *' }, '2026-03-27T12:00:00Z')
  r.scheduler.start()
  t.match(r.scheduler.view(), { next_action: { kind: 'preventive_revert', at: '2026-03-28T02:00:00.000Z' } })
  r.clock.advanceTo(new Date('2026-03-31T00:00:00Z'))
  t.same(r.calls.slice(1), [
    { what: revert, at: '2026-03-28T02:00:00.000Z' }, // 03:00 CET
    { what: revert, at: '2026-03-29T01:00:00.000Z' }, // 03:00 CEST, right after the gap
    { what: revert, at: '2026-03-30T01:00:00.000Z' }
  ])
  r = recording(t, { preventive_revert_cron: '30 2 * * *' }, '2026-03-27T12:00:00Z')
  r.scheduler.start()
  r.clock.advanceTo(new Date('2026-03-31T00:00:00Z'))
  t.same(r.calls.slice(1).map((c) => c.at), ['2026-03-28T01:30:00.000Z', '2026-03-30T00:30:00.000Z'], 'none on 2026-03-29: 02:30 does not exist')
  r = recording(t, { preventive_revert_cron: '30 2 * * *' }, '2026-10-24T12:00:00Z')
  r.scheduler.start()
  r.clock.advanceTo(new Date('2026-10-27T00:00:00Z'))
  t.same(r.calls.slice(1).map((c) => c.at), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'], 'once on 2026-10-25, at the first 02:30 (CEST)')

  // With opening hours: only while open; the opening and the closing revert or stop anyway.
  r = recording(t, { hours: weekdays, preventive_revert_cron: '0 */3 * * 1-5' }, '2026-11-23T06:00:00Z')
  r.scheduler.start()
  r.clock.advanceTo(new Date('2026-11-24T06:00:00Z'))
  t.same(r.calls, [
    { what: 'close', at: '2026-11-23T06:00:00.000Z' },
    { what: 'open', at: '2026-11-23T08:00:00.000Z' },
    { what: revert, at: '2026-11-23T11:00:00.000Z' },
    { what: revert, at: '2026-11-23T14:00:00.000Z' },
    { what: 'close', at: '2026-11-23T17:00:00.000Z' }
  ])
  t.equal(r.clock.pending, 1, 'one timer armed')
})

t.test('a clock that jumps: caught up within MAX_WAIT_MS; a preventive revert long overdue is skipped', async (t) => {
  let r = recording(t, { hours: weekdays }, '2026-11-23T06:00:00Z') // Monday 07:00 CET
  r.scheduler.start()
  r.clock.jump(5 * 3_600_000) // to 12:00 CET, past the opening, without timers firing
  t.same(r.calls.map((c) => c.what), ['close'])
  r.clock.advance(MAX_WAIT_MS)
  t.same(r.calls.at(-1), { what: 'open', at: '2026-11-23T12:00:00.000Z' }, 'open at the next capped wake-up')

  r = recording(t, { preventive_revert: '12:00' }, '2026-11-23T10:00:00Z')
  r.scheduler.start()
  r.clock.jump(5 * 60_000)
  r.clock.advance(MAX_WAIT_MS)
  t.same(r.calls.at(-1), { what: 'revert:preventive_revert:schedule', at: '2026-11-23T11:05:00.000Z' }, '5 minutes late: still done')
  r = recording(t, { preventive_revert: '12:00' }, '2026-11-23T10:00:00Z')
  r.scheduler.start()
  r.clock.jump(30 * 60_000)
  r.clock.advance(MAX_WAIT_MS)
  t.same(r.calls.map((c) => c.what), ['open'], '30 minutes late: skipped (the host slept through it)')
  r.clock.advanceTo(new Date('2026-11-24T11:40:00Z'))
  t.same(r.calls.at(-1)?.what, 'revert:preventive_revert:schedule', 'and done again the next day')
})

t.test('with the real Watchdog on libvirt\'s test driver: closing shuts down, opening reverts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-schedule-'))
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  await h.createSnapshot('test', snapshotXml('ready'))
  const clock = new FakeClock(new Date('2026-11-23T21:00:00Z')) // Monday 22:00 CET
  const vm: VmConfig = { ...VM_DEFAULTS, name: 'test', heartbeat_check_interval: 60 }
  const audit = new AuditLog({ dir })
  const silent = { debug () {}, info () {}, warn () {}, error () {} }
  const watchdog = newWatchdog({ vm, hypervisor: h, log: silent, clock, timers: clock, persistence: new StateFile(join(dir, 'state.json')), audit, shutdownTimeoutMs: 60_000 })
  await watchdog.start()
  t.teardown(() => watchdog.close())
  const scheduler = new Scheduler({ vm: 'test', schedule: scheduleSchema.parse({ hours: weekdays }), timezone: BERLIN, target: watchdog, clock, timers: clock })
  t.teardown(() => scheduler.stop())

  scheduler.start()
  t.match(watchdog.view(), { state: 'maintenance', maintenance: { reason: 'closed' } }, 'started at night: closed')
  await waitFor(async () => (await h.domainState('test')).state === 'shutoff')
  t.equal((await h.domainState('test')).state, 'shutoff', 'the VM was shut down')

  clock.advanceTo(new Date('2026-11-24T08:00:00Z'))
  t.match(watchdog.view(), { maintenance: null }, 'opening time: maintenance over')
  await waitFor(async () => (await h.domainState('test')).state === 'running')
  t.equal((await h.domainState('test')).state, 'running', 'reverted to the snapshot: running again')
  await watchdog.close()
  const kinds = (await audit.read({ limit: 50 })).map((e) => `${e.kind}:${e.reason}`)
  t.ok(kinds.includes('schedule_close:schedule'), 'audit: schedule_close')
  t.ok(kinds.includes('schedule_open:schedule'), 'audit: schedule_open')
  t.ok(kinds.includes('revert_started:schedule_open'), 'audit: the revert, reason schedule_open')
  await audit.close()
})

/** Polls a libvirt condition (the watchdog's actions run on libvirt's worker threads). */
async function waitFor (check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await new Promise((resolve) => setImmediate(resolve))
  }
}
