// The availability service's opening hours (src/availability/service.ts `openingHours`): worked
// out once for a span and clipped for every range inside it. The answer must be exactly the
// scheduler's `openingIntervals` for the same range (DST days, ranges past midnight, closed dates
// included), and the time zone arithmetic must run once per span, not once per VM per request.
// Fake clock, scratch directory, no Fastify.
import t, { type Test } from 'tap'
import { AvailabilityService } from '../../src/availability/service.ts'
import { availability, type Interval } from '../../src/availability/calc.ts'
import { silentLog } from '../../src/ports/index.ts'
import { scheduleSchema, type ScheduleConfig } from '../../src/schedule/config.ts'
import { openingIntervals } from '../../src/schedule/state.ts'
import { instantOf, parseDay } from '../../src/schedule/zone.ts'
import { mulberry32 } from '../../harness/prng.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import { scratchDir } from '../helpers/scratch.ts'

const berlin = 'Europe/Berlin'
const HOUR = 3_600_000
const DAY = 24 * HOUR
// Ranges past midnight, a split day, a closed weekday, closed dates around both DST changes.
const schedule = scheduleSchema.parse({
  hours: { mon: 'closed', tue: '09:00-18:00', wed: '09:00-18:00', thu: '09:00-20:00', fri: '22:00-24:00', sat: '00:00-03:00, 10:00-18:00', sun: '01:00-04:00, 10:00-13:00, 14:00-18:00' },
  closed_dates: ['2026-03-25', '2026-10-21..2026-10-22', '2026-12-24']
})

function counting (): { calls: number, fn: typeof openingIntervals } {
  const c = { calls: 0, fn: (s: ScheduleConfig, zone: string, from: number, to: number) => { c.calls++; return openingIntervals(s, zone, from, to) } }
  return c
}

function service (t: Test, clock: FakeClock, vms: Array<{ name: string, schedule: ScheduleConfig | null }>, count = counting()) {
  return { count, s: new AvailabilityService({ dataDir: scratchDir(t), vms, timezone: berlin, clock, timers: clock, log: silentLog, openingIntervals: count.fn }) }
}

t.test('any range, asked in any order, gets exactly the scheduler\'s opening hours', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 2, 20, 12))
  const { s } = service(t, clock, [{ name: 'vm1', schedule }])
  const rand = mulberry32(15)
  // Two stretches with a DST change each (spring forward 2026-03-29, fall back 2026-10-25).
  const stretches = [Date.UTC(2026, 2, 20), Date.UTC(2026, 9, 15)]
  let asked = 0
  for (const base of stretches) {
    clock.advance(base + 12 * HOUR - clock.now())
    for (let i = 0; i < 400; i++) {
      // Mostly "now moves on, ranges end at now" (windows, the dashboard), sometimes a report anywhere.
      clock.advance(Math.floor(rand() * 2 * HOUR))
      const now = clock.now()
      const kind = rand()
      const from = kind < 0.6 ? now - Math.floor(rand() * 8 * DAY) : base - 20 * DAY + Math.floor(rand() * 40 * DAY)
      const to = kind < 0.6 ? now : from + Math.floor(rand() * (kind < 0.9 ? 3 : 100) * DAY)
      const got = s.openingHours('vm1', from, to)
      const want = openingIntervals(schedule, berlin, from, to)
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        t.same(got, want, `[${new Date(from).toISOString()}, ${new Date(to).toISOString()})`)
        return
      }
      asked++
    }
  }
  t.equal(asked, 800, 'every answer equal')
  // Midnight and the DST nights themselves: a range ending or starting on the boundary.
  for (const day of ['2026-03-29', '2026-10-25', '2026-10-21', '2026-03-30']) {
    const midnight = instantOf(parseDay(day)!, 0, berlin)
    for (const [from, to] of [[midnight - DAY, midnight], [midnight, midnight + DAY], [midnight - HOUR, midnight + 5 * HOUR], [midnight + 2 * HOUR, midnight + 2 * HOUR]] as const) {
      t.same(s.openingHours('vm1', from, to), openingIntervals(schedule, berlin, from, to), `${day}: [${new Date(from).toISOString()}, ${new Date(to).toISOString()})`)
    }
  }
})

t.test('today and this week for 200 VMs: worked out once, again when the span runs out, never per VM per request', async (t) => {
  // Wednesday 2026-03-25 (a closed date) 12:00 UTC; the DST change on Sunday lies inside the span.
  const clock = new FakeClock(Date.UTC(2026, 2, 25, 12))
  const shared = scheduleSchema.parse({ hours: { mon: '09:00-18:00', tue: '09:00-18:00', wed: '09:00-18:00', thu: '09:00-18:00', fri: '09:00-18:00', sat: '10:00-20:00', sun: '01:00-04:00' } })
  const vms = Array.from({ length: 200 }, (_, i) => ({ name: `vm${i}`, schedule: shared }))
  const { s, count } = service(t, clock, [...vms, { name: 'always', schedule: null }, { name: 'own', schedule }])
  for (const vm of [...vms, { name: 'always' }, { name: 'own' }]) {
    s.history(vm.name).append({ at: clock.now() - 9 * DAY, status: 'healthy', reason: null, source: null }).catch(() => {})
    s.history(vm.name).append({ at: clock.now() - 2 * DAY, status: 'reverting', reason: 'heartbeat_timeout', source: 'auto' }).catch(() => {})
    s.history(vm.name).append({ at: clock.now() - 2 * DAY + 60_000, status: 'healthy', reason: null, source: null }).catch(() => {})
  }
  /** What windows() said before the span existed: availability over the scheduler's intervals, asked directly. */
  const direct = (vm: string, sched: ScheduleConfig | null) => {
    const now = clock.now()
    const starts = s.windowStarts(now)
    const records = s.history(vm).records
    const open = (from: number): Interval[] | null => sched === null ? null : openingIntervals(sched, berlin, from, now)
    return { today: availability(records, open(starts.today), starts.today, now), week: availability(records, open(starts.week), starts.week, now) }
  }
  const requests = () => {
    for (const vm of vms) s.windows(vm.name)
    s.windows('always')
    s.windows('own')
  }

  requests()
  t.equal(count.calls, 2, 'the first request: one span per schedule (the 200 VMs share one), none without a schedule')
  for (let i = 0; i < 50; i++) { clock.advance(7000); requests() }
  t.equal(count.calls, 2, '50 more requests over 6 minutes: nothing worked out again')
  t.same(s.windows('vm7'), direct('vm7', shared), 'the figures are the ones asked directly')
  t.same(s.windows('own'), direct('own', schedule))
  t.same(s.windows('always'), direct('always', null))

  // Across local midnight, then into next week (over the DST change): still the same figures.
  const calls = count.calls
  clock.advance(instantOf(parseDay('2026-03-26')!, 0, berlin) + 1000 - clock.now())
  requests()
  t.same(s.windows('vm7'), direct('vm7', shared), 'after midnight')
  t.equal(count.calls, calls, 'a new day inside the span: nothing worked out again')
  clock.advance(instantOf(parseDay('2026-03-30')!, 0, berlin) + 5 * HOUR - clock.now())
  requests()
  t.same(s.windows('vm7'), direct('vm7', shared), 'Monday after the 23-hour Sunday')
  t.same(s.windows('own'), direct('own', schedule))
  t.equal(count.calls, calls, 'still within the week worked out ahead')
  clock.advance(3 * DAY)
  requests()
  t.equal(count.calls, calls + 2, 'past the span: worked out again, once per schedule')
  for (let i = 0; i < 20; i++) { clock.advance(60_000); requests() }
  t.equal(count.calls, calls + 2, 'and reused after that')
  t.same(s.windows('vm199'), direct('vm199', shared))

  // A report far back is answered directly (as before) and does not push the span out.
  const far = s.openingHours('vm1', clock.now() - 200 * DAY, clock.now() - 150 * DAY)
  t.same(far, openingIntervals(shared, berlin, clock.now() - 200 * DAY, clock.now() - 150 * DAY))
  const afterFar = count.calls
  requests()
  t.equal(count.calls, afterFar, 'this week\'s span is still there')
})
