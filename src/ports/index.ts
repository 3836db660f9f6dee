// The small interfaces through which the service meets time and logging. Every layer imports
// them from here (never from a sibling layer), so tests swap in a fake clock and a silent log.

/** Wall-clock time in epoch ms. */
export interface Clock { now (): number }

export const systemClock: Clock = { now: Date.now }

/** Timers as the runtime uses them; tests pass test/helpers/fake-clock.ts. */
export interface TimerPort {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

/** setTimeout overflows past 2^31-1 ms; a far deadline is approached in steps no longer than this. */
export const MAX_TIMER_MS = 24 * 3600 * 1000

/** Real timers, unref'd: a pending timer never keeps the process alive. */
export const realTimers: TimerPort = {
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS)).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}

/** pino's Logger fits. Components take the levels they use: `Pick<Log, 'info' | 'warn'>`. */
export interface Log {
  debug (obj: object, msg: string): void
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export const silentLog: Log = { debug () {}, info () {}, warn () {}, error () {} }
