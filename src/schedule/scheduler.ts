// The runtime of one VM's schedule: at start it brings the watchdog to what the schedule wants
// now (open or closed), then keeps one timer armed for the next action. The timer never waits
// longer than MAX_WAIT_MS, and every wake-up compares the wanted state with the one applied, so
// a clock that jumps (NTP, a suspended host) is caught up within that time.
import { realTimers, silentLog, type Clock, type Log, type TimerPort } from '../ports/index.ts'
import type { ScheduleConfig } from './config.ts'
import { scheduleState, type ScheduleAction, type ScheduleState } from './state.ts'

/** The part of a Watchdog the scheduler drives. */
export interface ScheduleTarget {
  schedule (open: boolean): unknown
  requestRevert (reason: string, source: 'schedule'): unknown
}

export interface SchedulerOptions {
  vm: string
  schedule: ScheduleConfig
  timezone: string
  target: ScheduleTarget
  clock: Clock
  timers?: TimerPort
  log?: Pick<Log, 'info' | 'warn'>
}

export interface ScheduleView {
  timezone: string
  open: boolean
  next_change: string | null
  next_action: { kind: ScheduleAction['kind'], at: string } | null
  last_action: { kind: ScheduleAction['kind'], at: string } | null
}

/** The longest single wait (1 h): bounds how late a clock jump is noticed. */
export const MAX_WAIT_MS = 3_600_000
/** A preventive revert more than this late (the host slept through it) is skipped. */
export const PREVENTIVE_LATE_LIMIT_MS = 600_000

export const PREVENTIVE_REVERT_REASON = 'preventive_revert'

export class Scheduler {
  readonly #o: Required<SchedulerOptions>
  #timer: unknown = null
  #applied: boolean | null = null
  #pending: ScheduleAction | null = null
  #last: ScheduleAction | null = null
  #state: ScheduleState | null = null
  #running = false

  constructor (options: SchedulerOptions) {
    this.#o = { ...options, timers: options.timers ?? realTimers, log: options.log ?? silentLog }
  }

  /** Applies what the schedule wants now and arms the timer. */
  start (): void {
    if (this.#running) return
    this.#running = true
    this.#wake()
  }

  stop (): void {
    this.#running = false
    if (this.#timer !== null) this.#o.timers.clearTimeout(this.#timer)
    this.#timer = null
  }

  view (): ScheduleView {
    const state = this.#state ?? scheduleState(this.#o.schedule, this.#o.clock.now(), this.#o.timezone)
    return {
      timezone: this.#o.timezone,
      open: state.open,
      next_change: state.nextChange?.toISOString() ?? null,
      next_action: state.nextAction === null ? null : { kind: state.nextAction.kind, at: state.nextAction.at.toISOString() },
      last_action: this.#last === null ? null : { kind: this.#last.kind, at: this.#last.at.toISOString() }
    }
  }

  #wake (): void {
    this.#timer = null
    if (!this.#running) return
    const now = this.#o.clock.now()
    const pending = this.#pending
    this.#pending = null
    const state = scheduleState(this.#o.schedule, now, this.#o.timezone)
    this.#state = state
    if (state.open !== this.#applied) {
      const first = this.#applied === null
      this.#applied = state.open
      this.#o.log.info({ vm: this.#o.vm, open: state.open, nextChange: state.nextChange }, first
        ? `schedule: ${state.open ? 'open' : 'closed'} now (at start)`
        : `schedule: ${state.open ? 'opening' : 'closing'} time`)
      this.#last = { kind: state.open ? 'open' : 'close', at: new Date(now) }
      this.#call(() => this.#o.target.schedule(state.open))
    } else if (pending?.kind === 'preventive_revert' && now >= pending.at.getTime()) {
      if (now - pending.at.getTime() <= PREVENTIVE_LATE_LIMIT_MS && state.open) {
        this.#o.log.info({ vm: this.#o.vm, due: pending.at }, 'schedule: preventive revert')
        this.#last = { kind: 'preventive_revert', at: new Date(now) }
        this.#call(() => this.#o.target.requestRevert(PREVENTIVE_REVERT_REASON, 'schedule'))
      } else {
        this.#o.log.warn({ vm: this.#o.vm, due: pending.at }, 'schedule: preventive revert skipped (its time passed long ago: did the clock jump?)')
      }
    }
    // Otherwise it woke early (waits are capped): #arm waits again for the same action.
    this.#arm(state, now)
  }

  #arm (state: ScheduleState, now: number): void {
    const next = state.nextAction
    this.#pending = next
    const wait = next === null ? MAX_WAIT_MS : Math.min(Math.max(next.at.getTime() - now, 0), MAX_WAIT_MS)
    this.#timer = this.#o.timers.setTimeout(() => this.#wake(), wait)
  }

  /** The watchdog's answer does not matter here; its failure must not stop the schedule. */
  #call (fn: () => unknown): void {
    try {
      const r = fn()
      if (r instanceof Promise) r.catch((err: unknown) => this.#o.log.warn({ vm: this.#o.vm, err }, 'schedule: the watchdog refused the action'))
    } catch (err) {
      this.#o.log.warn({ vm: this.#o.vm, err }, 'schedule: the watchdog refused the action')
    }
  }
}
