// Cron expressions in the schedule (`preventive_revert_cron: '0 3 * * *'`), read with node-cron.
//
// node-cron parses and validates the expression and decides whether an instant matches it (its
// `validateDetailed` and `ScheduledTask.match`, with the configured zone). Its own scheduling is
// not used: a started task arms global setTimeout and reads `new Date()`, and its next-run API
// (`getNextRun`, `getNextRuns`) starts from the real now. The Scheduler instead arms one timer
// from its TimerPort to an instant computed here from the instant it passes in, so tests drive
// cron times on the fake clock, and the wanted state (open/closed, closed dates, clock jumps) is
// recomputed in one place at every wake-up.
//
// Daylight saving: a cron time inside the spring-forward gap does not happen that day (node-cron's
// matcher: 02:30 on 2026-03-29 in Europe/Berlin matches nothing). A time that happens twice (fall
// back) fires once, at its first occurrence, as HH:MM times do here (so `*/30 * * * *` skips the
// repeated hour); node-cron's own timer would take the second occurrence of a daily time and
// both of a sub-hourly one.
import { createTask, validateDetailed, type ParsedFields } from 'node-cron'
import { formatDay, instantOf, localTime } from './zone.ts'

/** A cron expression's problem in words, or null when node-cron accepts it. */
export function cronProblem (expression: string): string | null {
  let problems: string[]
  try {
    const result = validateDetailed(expression)
    if (result.valid) return null
    problems = result.errors.map((e) => e.field === 'expression' ? e.message : `${e.field}: ${e.message}`)
  } catch (err) {
    problems = [err instanceof Error ? err.message : String(err)]
  }
  return `"${expression}" is not a cron expression (${problems.join('; ')}): write minute hour day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day or "30 6 * * 1-5" for 06:30 Monday to Friday`
}

/**
 * A preventive revert interrupts the exhibit: an expression that fires more than once within
 * an hour (several minutes or seconds, e.g. every minute or every five minutes) is refused. Null when it is
 * rare enough (or not a cron expression at all: cronProblem says so).
 */
export function cronTooFrequent (expression: string): string | null {
  let fields: ParsedFields | undefined
  try {
    fields = validateDetailed(expression).fields
  } catch {
    return null
  }
  if (fields === undefined || (fields.minute.length <= 1 && fields.second.length <= 1)) return null
  return `"${expression}" fires more than once an hour (minutes ${fields.minute.length > 1 ? fields.minute.slice(0, 5).join(',') + (fields.minute.length > 5 ? ',…' : '') : fields.minute.join(',')}): a preventive revert interrupts the exhibit, so at most one an hour; give one minute, e.g. "0 3 * * *"`
}

export interface CronMatcher {
  readonly expression: string
  readonly zone: string
  readonly fields: ParsedFields
  /** node-cron's verdict: does the wall clock in `zone` at `instant` match the expression? */
  matches (instant: number): boolean
}

const matchers = new Map<string, CronMatcher>()

/** The matcher of a valid expression in `zone` (cached). Throws on an expression node-cron refuses. */
export function cronMatcher (expression: string, zone: string): CronMatcher {
  const key = `${zone} ${expression}`
  let matcher = matchers.get(key)
  if (matcher !== undefined) return matcher
  const result = validateDetailed(expression)
  if (!result.valid || result.fields === undefined) throw new Error(cronProblem(expression) ?? `"${expression}" is not a cron expression`)
  // A task is created only to use its matcher; it is never started (no timer). Destroying it
  // takes it out of node-cron's global registry at once, and `match` stays a pure function.
  const task = createTask(expression, () => {}, { timezone: zone })
  task.destroy() // synchronous for an inline task
  matcher = { expression, zone, fields: result.fields, matches: (instant) => task.match(new Date(instant)) }
  matchers.set(key, matcher)
  return matcher
}

/** Month (1-12) of a local day number. */
function monthOf (day: number): number {
  return Number(formatDay(day).slice(5, 7))
}

/**
 * The first instant strictly after `after` and strictly before `before` at which the expression
 * matches, or null. Walks local days, and in each day the times the fields allow in order; a day
 * that does not match (day of month, month, weekday) is left after one probe.
 */
export function nextCronMatch (matcher: CronMatcher, after: number, before: number, zone = matcher.zone): number | null {
  if (before <= after) return null
  const { second, minute, hour, month } = matcher.fields
  const seconds = [...second].sort((a, b) => a - b)
  const minutes = [...minute].sort((a, b) => a - b)
  const hours = [...hour].sort((a, b) => a - b)
  const start = localTime(after, zone)
  const lastDay = localTime(before, zone).day
  for (let day = start.day; day <= lastDay; day++) {
    if (!month.includes(monthOf(day))) continue
    let dayChecked = false
    for (const h of hours) {
      for (const m of minutes) {
        // On the first day, times well before `after` are not computed (an hour's margin: a
        // fall-back night repeats an hour).
        if (day === start.day && h * 60 + m < start.minute - 60) continue
        const base = instantOf(day, h * 60 + m, zone)
        for (const s of seconds) {
          const at = base + s * 1000
          if (at <= after) continue
          if (matcher.matches(at)) return at < before ? at : null
          // A time of the day that the wall clock shows (not one moved out of a DST gap) that
          // does not match: the day itself does not.
          const shown = localTime(at, zone)
          if (shown.day === day && shown.minute === h * 60 + m) { dayChecked = true; break }
        }
        if (dayChecked) break
      }
      if (dayChecked) break
    }
  }
  return null
}
