// What a schedule wants at an instant: open or closed, when that changes next, and the next
// action to take (open, close or the daily preventive revert). Pure: the instant and the zone
// are arguments; no timers, no Date.now().
import { compileSchedule, type CompiledSchedule, type ScheduleConfig } from './config.ts'
import { cronMatcher, nextCronMatch } from './cron.ts'
import { instantOf, localTime, weekdayOf } from './zone.ts'

export type ScheduleActionKind = 'open' | 'close' | 'preventive_revert'

export interface ScheduleAction {
  kind: ScheduleActionKind
  at: Date
}

export interface ScheduleState {
  open: boolean
  /** When `open` flips next; null when it never does (always open, or closed for good). */
  nextChange: Date | null
  /** The next thing the scheduler does: the next change, or a preventive revert before it. */
  nextAction: ScheduleAction | null
}

/** How far ahead to look. A museum closed for longer than this is "closed, no reopening known". */
const HORIZONS = [8, 400]

type Interval = [number, number]

function isClosedDay (schedule: CompiledSchedule, day: number): boolean {
  return schedule.closedDates.some(([first, last]) => day >= first && day <= last)
}

/** Open intervals (instants) of local days first..last, sorted and merged across midnights. */
function openIntervals (schedule: CompiledSchedule, zone: string, first: number, last: number): Interval[] {
  const merged: Interval[] = []
  for (let day = first; day <= last; day++) {
    if (isClosedDay(schedule, day)) continue
    for (const [start, end] of schedule.hours[weekdayOf(day)]!) {
      const from = instantOf(day, start, zone)
      const to = instantOf(day, end, zone)
      if (to <= from) continue
      const prev = merged.at(-1)
      if (prev !== undefined && from <= prev[1]) prev[1] = Math.max(prev[1], to)
      else merged.push([from, to])
    }
  }
  return merged
}

/**
 * The opening hours within [from, to) as sorted, disjoint [start, end) instants (for the
 * availability figures: the share of opening hours a VM was healthy).
 */
export function openingIntervals (config: ScheduleConfig, zone: string, from: number, to: number): Array<[number, number]> {
  if (!(to > from)) return []
  const schedule = compileSchedule(config)
  // From the day before: its hours may reach past midnight (24:00) into the first day.
  return openIntervals(schedule, zone, localTime(from, zone).day - 1, localTime(to, zone).day)
    .map(([a, b]): [number, number] => [Math.max(a, from), Math.min(b, to)])
    .filter(([a, b]) => b > a)
}

export function scheduleState (config: ScheduleConfig, now: Date | number, zone: string): ScheduleState {
  const schedule = compileSchedule(config)
  const t = typeof now === 'number' ? now : now.getTime()
  const today = localTime(t, zone).day
  let result: ScheduleState | null = null
  for (const horizon of HORIZONS) {
    result = stateWithin(schedule, zone, t, today, horizon, horizon === HORIZONS.at(-1))
    if (result !== null) break
  }
  return result!
}

/** The state, or null when the answer lies beyond `horizon` days and `last` is false. */
function stateWithin (schedule: CompiledSchedule, zone: string, t: number, today: number, horizon: number, last: boolean): ScheduleState | null {
  // From yesterday: its hours may reach past midnight (24:00) into today.
  const intervals = openIntervals(schedule, zone, today - 1, today + horizon)
  const horizonEnd = instantOf(today + horizon + 1, 0, zone)
  const current = intervals.find(([from, to]) => from <= t && t < to)
  const open = current !== undefined
  let nextChange: number | null
  if (current !== undefined) {
    // Open up to the horizon: the end lies further ahead.
    nextChange = current[1] >= horizonEnd ? null : current[1]
  } else {
    nextChange = intervals.find(([from]) => from > t)?.[0] ?? null
  }
  if (nextChange === null && !last) return null

  let preventive: number | null = null
  if (schedule.preventiveRevert !== null) {
    for (let day = today; day <= today + horizon; day++) {
      const at = instantOf(day, schedule.preventiveRevert, zone)
      if (at <= t) continue
      if (nextChange !== null && at >= nextChange) break
      // Only while open, and not at an opening: opening reverts the VM anyway.
      if (intervals.some(([from, to]) => from < at && at < to)) { preventive = at; break }
    }
  }
  if (schedule.preventiveCron !== null) {
    const matcher = cronMatcher(schedule.preventiveCron, zone)
    const until = nextChange ?? horizonEnd
    // The first cron time inside an open interval (strictly: never at an opening) before the change.
    for (const [from, to] of intervals) {
      if (to <= t) continue
      if (from >= until) break
      const at = nextCronMatch(matcher, Math.max(t, from), Math.min(to, until))
      if (at !== null) { preventive = at; break }
    }
  }

  let nextAction: ScheduleAction | null = null
  if (nextChange !== null) nextAction = { kind: open ? 'close' : 'open', at: new Date(nextChange) }
  if (preventive !== null && (nextChange === null || preventive < nextChange)) nextAction = { kind: 'preventive_revert', at: new Date(preventive) }
  return { open, nextChange: nextChange === null ? null : new Date(nextChange), nextAction }
}
