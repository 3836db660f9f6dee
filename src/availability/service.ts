// The availability of every watched VM: records each VM's state changes in its history
// (history.ts) and answers figures for a range, for today and this week (calc.ts, pure).
// The watchdog's view comes in through `observe`; this module never imports the watchdog.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock, Log, TimerPort } from '../ports/index.ts'
import type { ScheduleConfig } from '../schedule/config.ts'
import { openingIntervals } from '../schedule/state.ts'
import { instantOf, localTime } from '../schedule/zone.ts'
import { availability, CAUSES, emptyLost, strip, type Cause, type Figures, type Interval, type StateRecord, type Status, type StripKind } from './calc.ts'
import { historyPath, StateHistory } from './history.ts'

/** The part of the watchdog's view a state record is made from (WatchdogView fits). */
export interface ObservedView {
  state: string
  maintenance: { reason: string } | null
  revert: { reason: string, source: string } | null
  lastRevert: { reason: string, source: string } | null
  exhausted: { reason: string } | null
}

export interface AvailabilityVm {
  name: string
  /** Opening hours; null: always open. */
  schedule: ScheduleConfig | null
}

export interface AvailabilityOptions {
  dataDir: string
  vms: readonly AvailabilityVm[]
  timezone: string
  clock: Clock
  timers: TimerPort
  log: Log
  /** Per-VM history file size before rotation (tests make it small). */
  maxBytes?: number
  /**
   * How often the "still watching" stamp (`{data_dir}/history/alive`) is rewritten (default one
   * minute): after a crash, the time since the last stamp counts as unmonitored, not as the last
   * state recorded.
   */
  aliveEveryMs?: number
  /** How opening hours are worked out (default: the scheduler's `openingIntervals`; tests count the calls). */
  openingIntervals?: (schedule: ScheduleConfig, zone: string, from: number, to: number) => Interval[]
}

export const ALIVE_EVERY_MS = 60_000

const DAY_MS = 86_400_000
/** A span of opening hours is worked out this far past the range asked for (`to` is mostly now: a week of asks hit it). */
const OPENING_AHEAD_MS = 7 * DAY_MS
/** ...and from this far back (this week's start lies within 8 days of now). */
const OPENING_BACK_MS = 8 * DAY_MS
/** A range longer than this (an old report, a counter long unchanged) is worked out on its own and not kept. */
const OPENING_SPAN_MAX_MS = 64 * DAY_MS

/** Opening hours of [from, to), worked out once: any range inside is this clipped. */
interface OpeningSpan { from: number, to: number, intervals: Interval[] }

/** `intervals` (sorted, disjoint) clipped to [from, to). */
function clipIntervals (intervals: readonly Interval[], from: number, to: number): Interval[] {
  // The first interval that ends after `from`.
  let lo = 0
  let hi = intervals.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (intervals[mid]![1] <= from) lo = mid + 1
    else hi = mid
  }
  const out: Interval[] = []
  for (let i = lo; i < intervals.length; i++) {
    const [a, b] = intervals[i]!
    if (a >= to) break
    const s = Math.max(a, from)
    const e = Math.min(b, to)
    if (e > s) out.push([s, e])
  }
  return out
}

export interface VmReport extends Figures {
  vm: string
  strip: Array<{ from: number, to: number, kind: StripKind }>
}

/** The record a view stands for. */
export function recordOf (view: ObservedView, at: number): StateRecord {
  const plain = (status: Status): StateRecord => ({ at, status, reason: null, source: null })
  switch (view.state) {
    case 'reverting': return { at, status: 'reverting', reason: view.revert?.reason ?? null, source: view.revert?.source ?? null }
    case 'grace': return { at, status: 'grace', reason: view.lastRevert?.reason ?? null, source: view.lastRevert?.source ?? null }
    case 'exhausted': return { at, status: 'exhausted', reason: view.exhausted?.reason ?? null, source: null }
    case 'maintenance': {
      const reason = view.maintenance?.reason ?? null
      return { at, status: reason === 'closed' ? 'closed' : 'maintenance', reason, source: null }
    }
    case 'starting': case 'healthy': case 'late': return plain(view.state)
    default: return plain('unmonitored')
  }
}

function sameState (a: StateRecord | null, b: StateRecord): boolean {
  return a !== null && a.status === b.status && a.reason === b.reason && a.source === b.source
}

interface Totals { checkpoint: number, lostMs: Record<Cause, number> }

export class AvailabilityService {
  readonly timezone: string
  readonly #vms = new Map<string, { config: AvailabilityVm, history: StateHistory, totals: Totals | null }>()
  readonly #clock: Clock
  readonly #timers: TimerPort
  readonly #log: Log
  readonly #alivePath: string
  readonly #aliveEveryMs: number
  #aliveTimer: unknown = null
  #aliveWrite: Promise<void> = Promise.resolve()
  #stopped = false
  #starts: { minute: number, value: { today: number, week: number } } | null = null
  readonly #startedAt: number
  readonly #openingIntervals: (schedule: ScheduleConfig, zone: string, from: number, to: number) => Interval[]
  /** Per schedule (VMs that inherit one share it): opening hours around the ranges asked for lately. */
  readonly #openingSpans = new WeakMap<ScheduleConfig, OpeningSpan>()

  constructor (options: AvailabilityOptions) {
    this.timezone = options.timezone
    this.#clock = options.clock
    this.#timers = options.timers
    this.#log = options.log
    this.#alivePath = join(options.dataDir, 'history', 'alive')
    this.#aliveEveryMs = options.aliveEveryMs ?? ALIVE_EVERY_MS
    this.#startedAt = options.clock.now()
    this.#openingIntervals = options.openingIntervals ?? openingIntervals
    for (const vm of options.vms) {
      const history = new StateHistory({ path: historyPath(options.dataDir, vm.name), log: options.log, ...(options.maxBytes ? { maxBytes: options.maxBytes } : {}) })
      this.#vms.set(vm.name, { config: vm, history, totals: null })
    }
  }

  /**
   * Reads the histories. One that does not end with the service stopping was cut short by a crash
   * (or a power cut): from the last "still watching" stamp on (or, without one, from its last
   * record) nothing was watched, and it says so. Then the stamp is kept fresh.
   */
  async load (): Promise<void> {
    await Promise.all([...this.#vms.values()].map((v) => v.history.load()))
    const stamp = await readFile(this.#alivePath, 'utf8').then((text) => Number(text.trim()), () => Number.NaN)
    for (const v of this.#vms.values()) {
      const last = v.history.last
      if (last === null || last.status === 'unmonitored') continue
      const at = Number.isFinite(stamp) && stamp > last.at ? Math.min(stamp, this.#clock.now()) : last.at
      v.history.append({ at, status: 'unmonitored', reason: 'service_crashed', source: null }).catch(() => {})
    }
    this.#alive()
  }

  #alive (): void {
    if (this.#stopped) return
    const now = this.#clock.now()
    this.#aliveWrite = this.#aliveWrite
      .then(() => mkdir(join(this.#alivePath, '..'), { recursive: true }))
      .then(() => writeFile(this.#alivePath, `${now}\n`))
      .catch((err: unknown) => this.#log.warn({ err, path: this.#alivePath }, 'cannot write the availability stamp'))
    this.#aliveTimer = this.#timers.setTimeout(() => { this.#aliveTimer = null; this.#alive() }, this.#aliveEveryMs)
  }

  has (vm: string): boolean {
    return this.#vms.has(vm)
  }

  history (vm: string): StateHistory {
    const v = this.#vms.get(vm)
    if (v === undefined) throw new Error(`availability: no VM "${vm}"`)
    return v.history
  }

  /** A change of the VM's state: appended when the state (with its reason and source) differs from the last one. */
  observe (vm: string, view: ObservedView): void {
    const history = this.history(vm)
    const record = recordOf(view, this.#clock.now())
    if (!sameState(history.last, record)) history.append(record).catch(() => {}) // logged by the history
  }

  /** Resolves once the stamp and every history line written so far are on disk. */
  async settled (): Promise<void> {
    await this.#aliveWrite
    await Promise.all([...this.#vms.values()].map((v) => v.history.flush()))
  }

  /** The service stops watching: from now on nothing is known. */
  async stop (): Promise<void> {
    this.#stopped = true
    if (this.#aliveTimer !== null) this.#timers.clearTimeout(this.#aliveTimer)
    this.#aliveTimer = null
    await this.#aliveWrite
    const now = this.#clock.now()
    for (const v of this.#vms.values()) {
      const record: StateRecord = { at: now, status: 'unmonitored', reason: 'service_stopped', source: null }
      if (v.history.last !== null && !sameState(v.history.last, record)) v.history.append(record).catch(() => {})
    }
    await Promise.all([...this.#vms.values()].map((v) => v.history.flush()))
  }

  /**
   * Opening hours of the VM within [from, to) (null: always open). The time zone arithmetic costs
   * ~0.2 ms a week per VM, and /api/v1/vms, /metrics and the dashboard ask for this week and today
   * per VM per request: a span around the ranges asked for is worked out once and clipped (the
   * same intervals: opening hours within [from, to) are those of any wider range, cut at from and to).
   */
  openingHours (vm: string, from: number, to: number): Interval[] | null {
    const schedule = this.#vms.get(vm)?.config.schedule ?? null
    if (schedule === null) return null
    if (!(to > from)) return []
    let span = this.#openingSpans.get(schedule)
    if (span === undefined || from < span.from || to > span.to) {
      // Back to this week's start at least, a week ahead (or as far as the span reached).
      const spanFrom = Math.min(from, to - OPENING_BACK_MS)
      const spanTo = span !== undefined && to <= span.to ? span.to : to + OPENING_AHEAD_MS
      if (spanTo - spanFrom > OPENING_SPAN_MAX_MS) return this.#openingIntervals(schedule, this.timezone, from, to)
      span = { from: spanFrom, to: spanTo, intervals: this.#openingIntervals(schedule, this.timezone, spanFrom, spanTo) }
      this.#openingSpans.set(schedule, span)
    }
    return clipIntervals(span.intervals, from, to)
  }

  /** Figures and the strip of [from, to); `to` past now is cut at now (the future is not known). */
  report (vm: string, from: number, to: number): VmReport {
    const end = Math.max(from, Math.min(to, this.#clock.now()))
    const records = this.history(vm).records
    const open = this.openingHours(vm, from, end)
    return { vm, ...availability(records, open, from, end), strip: strip(records, open, from, end) }
  }

  /** Local midnight today and local Monday 00:00 this week, in the configured time zone. */
  windowStarts (now = this.#clock.now()): { today: number, week: number } {
    // Kept per minute (midnight is a minute boundary in every time zone): the time zone arithmetic
    // costs ~90 µs, and /api/v1/vms asks once per VM.
    const minute = Math.floor(now / 60_000)
    if (this.#starts?.minute === minute) return this.#starts.value
    const local = localTime(now, this.timezone)
    const value = { today: instantOf(local.day, 0, this.timezone), week: instantOf(local.day - local.weekday, 0, this.timezone) }
    this.#starts = { minute, value }
    return value
  }

  /** Today's and this week's figures (from local midnight / Monday 00:00 to now). */
  windows (vm: string): { today: Figures, week: Figures } {
    const now = this.#clock.now()
    const starts = this.windowStarts(now)
    const records = this.history(vm).records
    const figures = (from: number) => availability(records, this.openingHours(vm, from, now), from, now)
    return { today: figures(starts.today), week: figures(starts.week) }
  }

  /**
   * Opening time lost by cause since the service started (for a Prometheus counter: it never goes
   * down). The part before the last settled record is added up once and kept; a late or starting
   * stretch still undecided is counted once it is decided.
   */
  lostSinceStart (vm: string): Record<Cause, number> {
    const v = this.#vms.get(vm)
    if (v === undefined) throw new Error(`availability: no VM "${vm}"`)
    const now = this.#clock.now()
    const records = v.history.records
    const totals = v.totals ??= { checkpoint: this.#startedAt, lostMs: emptyLost() }
    // Every record before the last decided one is decided too.
    let settledAt = totals.checkpoint
    for (let i = records.length - 1; i >= 0; i--) {
      const r = records[i]!
      if (r.status !== 'late' && r.status !== 'starting') { settledAt = Math.min(now, Math.max(settledAt, r.at)); break }
    }
    const add = (into: Record<Cause, number>, from: number, to: number) => {
      if (to <= from) return
      const f = availability(records, this.openingHours(vm, from, to), from, to)
      for (const c of CAUSES) into[c] += f.lostMs[c]
    }
    add(totals.lostMs, totals.checkpoint, settledAt)
    totals.checkpoint = Math.max(totals.checkpoint, settledAt)
    const out = { ...totals.lostMs }
    add(out, totals.checkpoint, now)
    return out
  }
}
