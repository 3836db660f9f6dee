// Wall-clock time in an IANA time zone with nothing but Intl (no dependency). Local dates are
// "day numbers" (days since 1970-01-01 of the local calendar), times of day are minutes.
// Daylight saving: a wall-clock time that does not exist (the spring-forward gap) is moved
// forward by the length of the gap (02:30 -> 03:30 in Europe/Berlin); a time that exists twice
// (fall-back) means its first occurrence. This is Temporal's 'compatible' disambiguation.

const DAY_MS = 86_400_000
const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter (zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone)
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric'
    })
    formatters.set(zone, f)
  }
  return f
}

export function isValidTimeZone (zone: string): boolean {
  try {
    formatter(zone)
    return true
  } catch {
    return false
  }
}

/** The zone this machine runs in (TZ, /etc/localtime), e.g. 'Europe/Berlin'; 'UTC' when unknown. */
export function systemTimeZone (): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC'
}

/** The wall-clock reading at `instant` as if it were UTC: Date.UTC(local parts). Whole seconds. */
function wallMs (instant: number, zone: string): number {
  const parts: Record<string, number> = {}
  for (const p of formatter(zone).formatToParts(new Date(instant))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value)
  }
  return Date.UTC(parts['year']!, parts['month']! - 1, parts['day']!, parts['hour']! % 24, parts['minute']!, parts['second']!)
}

/** Local time minus UTC at `instant`, in milliseconds (Europe/Berlin in summer: 7_200_000). */
export function zoneOffset (instant: number, zone: string): number {
  const whole = Math.floor(instant / 1000) * 1000
  return wallMs(whole, zone) - whole
}

export interface LocalTime {
  /** Days since 1970-01-01 of the local calendar. */
  day: number
  /** 0 = Monday ... 6 = Sunday. */
  weekday: number
  /** Minutes since local midnight. */
  minute: number
}

export function localTime (instant: number, zone: string): LocalTime {
  const wall = wallMs(instant, zone)
  const day = Math.floor(wall / DAY_MS)
  return { day, weekday: weekdayOf(day), minute: Math.floor((wall - day * DAY_MS) / 60_000) }
}

/** 0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday). */
export function weekdayOf (day: number): number {
  return ((day + 3) % 7 + 7) % 7
}

/** 'YYYY-MM-DD' of a day number. */
export function formatDay (day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10)
}

/** The day number of 'YYYY-MM-DD', or null when that is not a date of the calendar. */
export function parseDay (text: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text)
  if (!m) return null
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const ms = Date.UTC(y, mo - 1, d)
  const back = new Date(ms)
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return null
  return ms / DAY_MS
}

/**
 * The instant at which the wall clock in `zone` shows `minute` minutes past midnight of local
 * `day` (minute may be 1440: the next midnight). Gaps and overlaps as described at the top.
 */
export function instantOf (day: number, minute: number, zone: string): number {
  const local = day * DAY_MS + minute * 60_000
  // Offsets a day either side: zones change their offset at most once within two days.
  const before = zoneOffset(local - DAY_MS, zone)
  const after = zoneOffset(local + DAY_MS, zone)
  const valid = [...new Set([before, after])]
    .map((offset) => ({ offset, instant: local - offset }))
    .filter((c) => zoneOffset(c.instant, zone) === c.offset)
    .map((c) => c.instant)
  // No candidate: the time falls in a gap; reading it with the offset before the gap moves it
  // forward by the gap's length.
  if (valid.length === 0) return local - before
  return Math.min(...valid)
}
