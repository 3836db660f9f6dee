// scheduleState: open or closed at an instant, the next change and the next action, in a real
// IANA zone (Intl's tz data), across daylight-saving changes and closed dates.
import t from 'tap'
import { scheduleSchema, type ScheduleConfig } from '../../src/schedule/config.ts'
import { scheduleState } from '../../src/schedule/state.ts'
import { instantOf, localTime, parseDay } from '../../src/schedule/zone.ts'

const BERLIN = 'Europe/Berlin'
const schedule = (input: unknown): ScheduleConfig => scheduleSchema.parse(input)
const iso = (d: Date | null | undefined) => d?.toISOString() ?? null
const weekdays = { mon: '09:00-18:00', tue: '09:00-18:00', wed: '09:00-18:00', thu: '09:00-18:00', fri: '09:00-18:00', sat: 'closed' }

t.test('zone arithmetic: offsets, gaps and overlaps of Europe/Berlin', async (t) => {
  const spring = parseDay('2026-03-29')!
  const fall = parseDay('2026-10-25')!
  t.equal(new Date(instantOf(spring, 60, BERLIN)).toISOString(), '2026-03-29T00:00:00.000Z', '01:00 CET')
  t.equal(new Date(instantOf(spring, 150, BERLIN)).toISOString(), '2026-03-29T01:30:00.000Z', '02:30 does not exist: moved forward by the gap, 03:30 CEST')
  t.equal(new Date(instantOf(spring, 180, BERLIN)).toISOString(), '2026-03-29T01:00:00.000Z', '03:00 CEST')
  t.equal(new Date(instantOf(fall, 150, BERLIN)).toISOString(), '2026-10-25T00:30:00.000Z', '02:30 exists twice: the first (CEST)')
  t.equal(new Date(instantOf(fall, 180, BERLIN)).toISOString(), '2026-10-25T02:00:00.000Z', '03:00 CET')
  t.equal(new Date(instantOf(fall, 1440, BERLIN)).toISOString(), '2026-10-25T23:00:00.000Z', '24:00 is the next midnight')
  t.same(localTime(Date.parse('2026-03-29T01:30:00Z'), BERLIN), { day: spring, weekday: 6, minute: 210 }, 'Sunday 03:30')
  t.equal(localTime(Date.parse('2026-11-23T12:00:00Z'), 'America/New_York').weekday, 0, 'Monday in New York')
})

t.test('weekday hours in Berlin: mid-day, evening, weekend', async (t) => {
  const s = schedule({ hours: weekdays })
  // 2026-11-23 is a Monday (CET, UTC+1).
  let st = scheduleState(s, new Date('2026-11-23T11:00:00Z'), BERLIN)
  t.equal(st.open, true, 'Monday 12:00: open')
  t.equal(iso(st.nextChange), '2026-11-23T17:00:00.000Z', 'closes 18:00 local')
  t.same(st.nextAction && { kind: st.nextAction.kind, at: iso(st.nextAction.at) }, { kind: 'close', at: '2026-11-23T17:00:00.000Z' })

  st = scheduleState(s, new Date('2026-11-23T21:00:00Z'), BERLIN)
  t.equal(st.open, false, 'Monday 22:00: closed')
  t.same(st.nextAction && { kind: st.nextAction.kind, at: iso(st.nextAction.at) }, { kind: 'open', at: '2026-11-24T08:00:00.000Z' }, 'opens Tuesday 09:00')

  st = scheduleState(s, new Date('2026-11-27T19:00:00Z'), BERLIN)
  t.equal(st.open, false, 'Friday 20:00')
  t.equal(iso(st.nextChange), '2026-11-30T08:00:00.000Z', 'next opening Monday 09:00 (sun left out = closed)')

  t.equal(scheduleState(s, new Date('2026-11-23T08:00:00Z'), BERLIN).open, true, 'the opening minute is open')
  t.equal(scheduleState(s, new Date('2026-11-23T17:00:00Z'), BERLIN).open, false, 'the closing minute is closed')
  t.equal(scheduleState(s, new Date('2026-11-23T11:00:00Z'), 'UTC').open, true, 'same config, other zone')
  t.equal(scheduleState(s, new Date('2026-11-23T17:30:00Z'), 'UTC').open, true, '17:30 UTC is still open in UTC')
})

t.test('several ranges a day, and hours through midnight', async (t) => {
  const s = schedule({ hours: { mon: '10:00-13:00, 14:00-24:00', tue: '00:00-02:00' } })
  t.equal(scheduleState(s, new Date('2026-11-23T12:30:00Z'), BERLIN).open, false, 'lunch break')
  const st = scheduleState(s, new Date('2026-11-23T20:00:00Z'), BERLIN)
  t.equal(st.open, true)
  t.equal(iso(st.nextChange), '2026-11-24T01:00:00.000Z', 'Monday 24:00 and Tuesday 00:00 are one stretch: closes Tuesday 02:00')
})

t.test('closed dates', async (t) => {
  const s = schedule({ hours: weekdays, closed_dates: ['2026-11-24', '2026-12-24..2026-12-26'] })
  let st = scheduleState(s, new Date('2026-11-23T21:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2026-11-25T08:00:00.000Z', 'Tuesday is closed: opens Wednesday')
  st = scheduleState(s, new Date('2026-11-24T11:00:00Z'), BERLIN)
  t.equal(st.open, false, 'closed at noon on a closed date')
  st = scheduleState(s, new Date('2026-12-23T20:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2026-12-28T08:00:00.000Z', 'closed 24th to 26th, then the weekend: opens Monday 28th')

  const always = schedule({ closed_dates: ['2026-11-24'] })
  st = scheduleState(always, new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.equal(st.open, true, 'no hours: open all day')
  t.equal(iso(st.nextChange), '2026-11-23T23:00:00.000Z', 'until the closed date begins (local midnight)')
  st = scheduleState(always, new Date('2026-11-24T12:00:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange)], [false, '2026-11-24T23:00:00.000Z'])
})

t.test('always open, always closed, closed for longer than the horizon', async (t) => {
  let st = scheduleState(schedule({}), new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.same(st, { open: true, nextChange: null, nextAction: null }, 'no hours, no dates: always open')
  st = scheduleState(schedule({ hours: {} }), new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.same(st, { open: false, nextChange: null, nextAction: null }, 'hours with no day: always closed')
  st = scheduleState(schedule({ hours: weekdays, closed_dates: ['2026-11-01..2028-01-01'] }), new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.same(st, { open: false, nextChange: null, nextAction: null }, 'closed for renovation beyond 400 days: no reopening known')
  st = scheduleState(schedule({ hours: weekdays, closed_dates: ['2026-11-01..2027-03-01'] }), new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2027-03-02T08:00:00.000Z', 'a long closure: beyond the first 8-day look-ahead')
})

t.test('daylight saving: spring forward (Europe/Berlin, 2026-03-29)', async (t) => {
  // An opening at 02:30, which does not exist that night: it happens at 03:30 CEST.
  const s = schedule({ hours: { sat: '09:00-18:00', sun: '02:30-18:00', mon: '09:00-18:00' } })
  let st = scheduleState(s, new Date('2026-03-28T20:00:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange)], [false, '2026-03-29T01:30:00.000Z'], 'Saturday night: opens 03:30 CEST')
  st = scheduleState(s, new Date('2026-03-29T01:30:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange)], [true, '2026-03-29T16:00:00.000Z'], 'open from then; closes 18:00 CEST = 16:00 UTC')
  st = scheduleState(s, new Date('2026-03-29T01:29:00Z'), BERLIN)
  t.equal(st.open, false, 'a minute before: closed')
  st = scheduleState(s, new Date('2026-03-29T17:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2026-03-30T07:00:00.000Z', 'Monday 09:00 CEST')
  st = scheduleState(s, new Date('2026-03-28T12:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2026-03-28T17:00:00.000Z', 'Saturday still CET: closes 17:00 UTC')
})

t.test('daylight saving: fall back (Europe/Berlin, 2026-10-25)', async (t) => {
  // 02:30 happens twice that night: the first one (CEST) counts.
  const s = schedule({ hours: { sat: '20:00-24:00', sun: '00:00-02:30, 09:00-18:00' } })
  let st = scheduleState(s, new Date('2026-10-24T19:00:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange)], [true, '2026-10-25T00:30:00.000Z'], 'Saturday night open through midnight until the first 02:30')
  st = scheduleState(s, new Date('2026-10-25T01:15:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange)], [false, '2026-10-25T08:00:00.000Z'], 'the second 02:15 (CET) is closed; opens 09:00 CET')
  st = scheduleState(s, new Date('2026-10-25T12:00:00Z'), BERLIN)
  t.equal(iso(st.nextChange), '2026-10-25T17:00:00.000Z', 'closes 18:00 CET')
})

t.test('preventive revert: once a day, only while open, never at an opening', async (t) => {
  const s = schedule({ hours: weekdays, preventive_revert: '12:00' })
  let st = scheduleState(s, new Date('2026-11-23T09:00:00Z'), BERLIN)
  t.same(st.nextAction && { kind: st.nextAction.kind, at: iso(st.nextAction.at) }, { kind: 'preventive_revert', at: '2026-11-23T11:00:00.000Z' }, 'Monday 10:00: next is the revert at 12:00')
  t.equal(iso(st.nextChange), '2026-11-23T17:00:00.000Z', 'the next change is still the closing')
  st = scheduleState(s, new Date('2026-11-23T11:00:00Z'), BERLIN)
  t.equal(st.nextAction?.kind, 'close', 'at 12:00 itself it is due now, the next action is the closing')

  const night = schedule({ hours: weekdays, preventive_revert: '06:30' })
  st = scheduleState(night, new Date('2026-11-23T09:00:00Z'), BERLIN)
  t.equal(st.nextAction?.kind, 'close', 'a revert time while closed never happens (the opening reverts)')
  const atOpening = schedule({ hours: weekdays, preventive_revert: '09:00' })
  st = scheduleState(atOpening, new Date('2026-11-23T06:00:00Z'), BERLIN)
  t.equal(st.nextAction?.kind, 'open', 'a revert time at the opening: the opening only')

  const allDay = schedule({ preventive_revert: '06:30' })
  st = scheduleState(allDay, new Date('2026-11-23T12:00:00Z'), BERLIN)
  t.same([st.open, iso(st.nextChange), st.nextAction?.kind, iso(st.nextAction?.at)], [true, null, 'preventive_revert', '2026-11-24T05:30:00.000Z'], 'open all day: every morning')
  st = scheduleState(allDay, new Date('2026-03-28T12:00:00Z'), BERLIN)
  t.equal(iso(st.nextAction?.at), '2026-03-29T04:30:00.000Z', 'over the spring-forward night: 06:30 CEST')
})
