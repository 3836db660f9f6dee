// The `schedule:` config block of a VM (its zod schema, used by src/config/schema.ts) and its
// compiled form. What a technician writes:
//   schedule:
//     hours: { mon: closed, tue: '09:00-18:00', ..., sun: '10:00-13:00, 14:00-18:00' }
//     closed_dates: ['2026-12-24', '2026-12-31..2027-01-01']
//     preventive_revert: '06:30'          # or, as a cron expression:
//     preventive_revert_cron: '0 3 * * 1-5'
import { z } from 'zod'
import { cronProblem, cronTooFrequent } from './cron.ts'
import { parseDay } from './zone.ts'

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
export type Weekday = typeof WEEKDAYS[number]

/** [start, end) in minutes since local midnight; end may be 1440 (24:00). */
export type MinuteRange = readonly [number, number]

const TIME = /^([01]\d|2[0-3]):([0-5]\d)$/

/** Minutes since midnight of 'HH:MM' ('24:00' only when allowed), or null. */
export function parseClockTime (text: string, allowEndOfDay = false): number | null {
  if (allowEndOfDay && text === '24:00') return 1440
  const m = TIME.exec(text)
  return m ? Number(m[1]) * 60 + Number(m[2]) : null
}

/**
 * Opening hours of one day: 'closed' (or null, or '') or one or more 'HH:MM-HH:MM' ranges
 * separated by commas. Returns the ranges, sorted and merged, or an error message.
 */
export function parseDayHours (value: string | null): MinuteRange[] | string {
  if (value === null) return []
  const text = value.trim()
  if (text === '' || text.toLowerCase() === 'closed') return []
  const ranges: Array<[number, number]> = []
  for (const part of text.split(',')) {
    const m = /^\s*(\S+?)\s*-\s*(\S+?)\s*$/.exec(part)
    const start = m ? parseClockTime(m[1]!) : null
    const end = m ? parseClockTime(m[2]!, true) : null
    if (!m || start === null || end === null) {
      return `"${part.trim()}" is not a time range: write HH:MM-HH:MM (24-hour clock, e.g. 09:00-18:00; 24:00 for midnight at the end), several separated by commas, or "closed"`
    }
    if (end <= start) {
      return `"${part.trim()}" ends before it starts: a range past midnight is two ranges, e.g. 18:00-24:00 on this day and 00:00-02:00 on the next`
    }
    ranges.push([start, end])
  }
  ranges.sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const r of ranges) {
    const last = merged.at(-1)
    if (last !== undefined && r[0] <= last[1]) last[1] = Math.max(last[1], r[1])
    else merged.push([r[0], r[1]])
  }
  return merged
}

/** 'YYYY-MM-DD' or 'YYYY-MM-DD..YYYY-MM-DD' (both days included) as [first, last] day numbers. */
export function parseDateRange (text: string): [number, number] | string {
  const [from, to, ...rest] = text.split('..')
  const first = parseDay(from!.trim())
  const last = to === undefined ? first : parseDay(to.trim())
  if (rest.length > 0 || first === null || last === null) return `"${text}" is not a date: write YYYY-MM-DD, or YYYY-MM-DD..YYYY-MM-DD for several days`
  if (last < first) return `"${text}": the last day is before the first`
  return [first, last]
}

const dayHoursSchema = z.string().nullable().superRefine((value, ctx) => {
  const parsed = parseDayHours(value)
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed })
})

export const scheduleSchema = z.strictObject({
  hours: z.strictObject(Object.fromEntries(WEEKDAYS.map((d) => [d, dayHoursSchema.optional()])) as Record<Weekday, z.ZodOptional<typeof dayHoursSchema>>)
    .nullable().default(null)
    .describe('Opening hours per weekday (mon ... sun): "09:00-18:00", several ranges separated by commas, or "closed"; a day left out is closed. No hours at all: open every day, all day (closed_dates still apply).'),
  closed_dates: z.array(z.string().superRefine((value, ctx) => {
    const parsed = parseDateRange(value)
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed })
  })).default([]).describe('Days closed whatever the weekday: "2026-12-24", or "2026-12-24..2026-12-26".'),
  preventive_revert: z.string().nullable().default(null).superRefine((value, ctx) => {
    if (value !== null && parseClockTime(value) === null) ctx.addIssue({ code: 'custom', message: `"${value}" is not a time of day: write HH:MM (24-hour clock), or null` })
  }).describe('Once a day at this time (HH:MM), revert the VM while it is open, to clear slow leaks. null: never.'),
  preventive_revert_cron: z.string().nullable().default(null).superRefine((value, ctx) => {
    const problem = value === null ? null : cronProblem(value) ?? cronTooFrequent(value)
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem })
  }).describe('Instead of preventive_revert: revert the VM while it is open at the times of this cron expression (minute hour day-of-month month day-of-week, in timezone), e.g. "0 3 * * *" or "30 6 * * 1-5". Times while closed or at an opening are skipped. null: never.')
}).superRefine((value, ctx) => {
  if (value.preventive_revert !== null && value.preventive_revert_cron !== null) {
    ctx.addIssue({ code: 'custom', path: ['preventive_revert_cron'], message: 'set preventive_revert (HH:MM) or preventive_revert_cron, not both' })
  }
})

export type ScheduleConfig = z.output<typeof scheduleSchema>

export interface CompiledSchedule {
  /** Per weekday (0 = Monday), the open ranges. */
  hours: MinuteRange[][]
  closedDates: Array<[number, number]>
  preventiveRevert: number | null
  /** The cron expression of `preventive_revert_cron`, validated. */
  preventiveCron: string | null
}

const compiled = new WeakMap<ScheduleConfig, CompiledSchedule>()

/** The schedule in minutes and day numbers. Throws on what the schema would have refused. */
export function compileSchedule (config: ScheduleConfig): CompiledSchedule {
  const cached = compiled.get(config)
  if (cached) return cached
  const hours = WEEKDAYS.map((day) => {
    if (config.hours === null) return [[0, 1440] as const]
    const parsed = parseDayHours(config.hours[day] ?? null)
    if (typeof parsed === 'string') throw new Error(`schedule.hours.${day}: ${parsed}`)
    return parsed
  })
  const closedDates = config.closed_dates.map((text, i) => {
    const parsed = parseDateRange(text)
    if (typeof parsed === 'string') throw new Error(`schedule.closed_dates[${i}]: ${parsed}`)
    return parsed
  })
  const preventiveRevert = config.preventive_revert === null ? null : parseClockTime(config.preventive_revert)
  if (config.preventive_revert !== null && preventiveRevert === null) throw new Error(`schedule.preventive_revert: "${config.preventive_revert}" is not HH:MM`)
  const cronError = config.preventive_revert_cron === null ? null : cronProblem(config.preventive_revert_cron)
  if (cronError !== null) throw new Error(`schedule.preventive_revert_cron: ${cronError}`)
  const result = { hours, closedDates, preventiveRevert, preventiveCron: config.preventive_revert_cron }
  compiled.set(config, result)
  return result
}
