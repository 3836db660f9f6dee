// Cron expressions of the schedule (src/schedule/cron.ts): node-cron's validation in words, and
// the next matching instant computed from a given instant (no timers), DST nights included.
import t from 'tap'
import { getTasks } from 'node-cron'
import { cronMatcher, cronProblem, nextCronMatch } from '../../src/schedule/cron.ts'
import { scheduleSchema } from '../../src/schedule/config.ts'
import { scheduleState } from '../../src/schedule/state.ts'

const BERLIN = 'Europe/Berlin'
const DAY = 86_400_000

/** The next `count` matches after `from` (ISO strings). */
function matches (expression: string, from: string, count: number, zone = BERLIN): string[] {
  const matcher = cronMatcher(expression, zone)
  const out: string[] = []
  let t = Date.parse(from)
  for (let i = 0; i < count; i++) {
    const next = nextCronMatch(matcher, t, t + 400 * DAY)
    if (next === null) break
    out.push(new Date(next).toISOString())
    t = next
  }
  return out
}

t.test('validation: node-cron\'s verdict, said with the field and what to write', async (t) => {
  t.equal(cronProblem('0 3 * * *'), null)
  t.equal(cronProblem('30 6 * * mon-fri'), null, 'names of weekdays')
  t.equal(cronProblem('@daily'), null, 'nicknames')
  t.match(cronProblem('61 3 * * *'), /^"61 3 \* \* \*" is not a cron expression \(minute: 61 is a invalid expression for minute\): write minute hour/)
  t.match(cronProblem('0 3 * *'), /expected 5 or 6 fields but got 4/)
  t.match(cronProblem('0 3 31 2 *'), /dayOfMonth: .*impossible day of month/)
  t.match(cronProblem('0 3 * * * ; reboot'), /illegal characters|expected 5 or 6 fields/)
  t.throws(() => cronMatcher('0 25 * * *', BERLIN), /"0 25 \* \* \*" is not a cron expression \(hour:/)
})

t.test('next match: daily, weekdays, last day of the month, in the zone', async (t) => {
  t.same(matches('0 3 * * *', '2026-11-23T12:00:00Z', 2), ['2026-11-24T02:00:00.000Z', '2026-11-25T02:00:00.000Z'], '03:00 CET = 02:00 UTC')
  t.same(matches('0 3 * * *', '2026-11-24T02:00:00Z', 1), ['2026-11-25T02:00:00.000Z'], 'strictly after: not the instant itself')
  t.same(matches('0 3 * * *', '2026-11-24T01:59:59.999Z', 1), ['2026-11-24T02:00:00.000Z'])
  t.same(matches('0 3 * * *', '2026-06-10T12:00:00Z', 1), ['2026-06-11T01:00:00.000Z'], 'summer: 03:00 CEST = 01:00 UTC')
  t.same(matches('30 6 * * 1-5', '2026-11-27T12:00:00Z', 2), ['2026-11-30T05:30:00.000Z', '2026-12-01T05:30:00.000Z'], 'Friday noon: next is Monday')
  t.same(matches('0 4 L * *', '2026-02-01T00:00:00Z', 2), ['2026-02-28T03:00:00.000Z', '2026-03-31T02:00:00.000Z'], 'L: last day of the month')
  const leap = cronMatcher('0 3 29 2 *', BERLIN)
  const from = Date.parse('2026-03-01T00:00:00Z')
  t.equal(new Date(nextCronMatch(leap, from, from + 1000 * DAY)!).toISOString(), '2028-02-29T02:00:00.000Z', 'a leap day, two years ahead')
  t.equal(nextCronMatch(leap, from, from + 400 * DAY), null, 'none within 400 days')
  t.same(matches('0 3 * * *', '2026-11-23T12:00:00Z', 1, 'America/New_York'), ['2026-11-24T08:00:00.000Z'], 'another zone')
  const m = cronMatcher('0 3 * * *', BERLIN)
  t.equal(nextCronMatch(m, Date.parse('2026-11-23T12:00:00Z'), Date.parse('2026-11-24T02:00:00Z')), null, 'the bound is exclusive')
})

t.test('DST in Europe/Berlin: a time in the spring-forward gap does not happen; a repeated time once', async (t) => {
  t.same(matches('30 2 * * *', '2026-03-27T12:00:00Z', 3), ['2026-03-28T01:30:00.000Z', '2026-03-30T00:30:00.000Z', '2026-03-31T00:30:00.000Z'], 'no 02:30 on 2026-03-29')
  t.same(matches('0 3 * * *', '2026-03-28T12:00:00Z', 1), ['2026-03-29T01:00:00.000Z'], '03:00 exists that night (CEST)')
  t.same(matches('30 2 * * *', '2026-10-24T12:00:00Z', 2), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'], 'the first 02:30 (CEST) only')
  t.same(matches('30 2 * * *', '2026-10-25T01:10:00Z', 1), ['2026-10-26T01:30:00.000Z'], 'from inside the repeated hour: the next day')
  t.same(matches('0 * * * *', '2026-10-24T23:30:00Z', 4), ['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z', '2026-10-25T04:00:00.000Z'], 'hourly: 02:00 CEST, then 03:00 CET (the repeated hour is skipped)')
})

t.test('matchers are not left in node-cron\'s task registry and arm no timer', async (t) => {
  const before = getTasks().size
  cronMatcher('17 5 * * *', 'Asia/Tokyo')
  cronMatcher('18 5 * * *', 'Asia/Tokyo')
  t.equal(getTasks().size, before)
})

t.test('scheduleState: preventive_revert_cron only while open, never at an opening or a closing', async (t) => {
  const iso = (d: Date | null | undefined) => d?.toISOString() ?? null
  const s = scheduleSchema.parse({ hours: { mon: '09:00-18:00', tue: '09:00-18:00' }, preventive_revert_cron: '0 */3 * * *' })
  const next = (at: string) => {
    const st = scheduleState(s, new Date(at), BERLIN)
    return [st.open, st.nextAction?.kind, iso(st.nextAction?.at)]
  }
  t.same(next('2026-11-23T06:00:00Z'), [false, 'open', '2026-11-23T08:00:00.000Z'], '06:00 and 09:00 are not while open: the opening')
  t.same(next('2026-11-23T08:00:00Z'), [true, 'preventive_revert', '2026-11-23T11:00:00.000Z'], 'open at 09:00: next is 12:00')
  t.same(next('2026-11-23T11:00:00Z'), [true, 'preventive_revert', '2026-11-23T14:00:00.000Z'], '12:00: then 15:00')
  t.same(next('2026-11-23T14:00:00Z'), [true, 'close', '2026-11-23T17:00:00.000Z'], '18:00 is the closing')
  t.same(next('2026-11-24T17:00:00Z'), [false, 'open', '2026-11-30T08:00:00.000Z'], 'closed Wednesday to Sunday')
})
