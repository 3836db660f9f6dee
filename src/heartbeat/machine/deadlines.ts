// When things are due: the deadlines a heartbeat sets (fixed, or where φ crosses the threshold)
// and the one instant the runtime must tick next.
import { addGap, crossingMs, fitModel, type GapWindow } from './detector.ts'
import type { Timing } from './settings.ts'
import type { WatchdogState } from './types.ts'

/** Watching: nothing holds automatic reverts back (no maintenance, not exhausted, no revert under way). */
export function isWatching (s: WatchdogState): boolean {
  return s.maintenance === null && s.exhausted === null && s.revert === null
}

export interface HeartbeatDeadlines {
  lateAt: number
  timeoutAt: number
  gapWindow: GapWindow
}

/**
 * What a heartbeat at `now` sets, from the state before it. With the adaptive detector the gap
 * since the previous beat joins the window when both beats fell while watching a running guest
 * (healthy or late): a boot, a grace or maintenance says nothing about the guest's rhythm.
 * The revert is due where φ reaches the threshold, clamped to [adaptive_min_timeout,
 * heartbeat_timeout]; with too few gaps, at heartbeat_timeout. The early warning ('late') is
 * at half of heartbeat_timeout, or just before the deadline when that comes sooner.
 */
export function heartbeatDeadlines (prev: WatchdogState, now: number, t: Timing): HeartbeatDeadlines {
  let gapWindow = prev.gapWindow
  if (t.adaptive && prev.lastHeartbeatAt !== null && isWatching(prev) && (prev.phase === 'healthy' || prev.phase === 'late')) {
    gapWindow = addGap(gapWindow, now - prev.lastHeartbeatAt)
  }
  const model = t.adaptive ? fitModel(gapWindow, t.adaptiveLearningMs) : null
  const afterMs = model === null ? t.timeoutMs : crossingMs(model, t.phiThreshold, t.adaptiveMinMs, t.timeoutMs)
  // 'late' where the fixed detector would say it (half of heartbeat_timeout), but never after the
  // revert is due and never before half-way to it: a short adaptive deadline does not turn every
  // ordinary 1.5 s gap of a 1 Hz guest into a warning.
  const lateMs = Math.max(Math.floor(afterMs / 2), Math.min(t.lateMs, afterMs - 1))
  return { lateAt: now + lateMs, timeoutAt: now + afterMs, gapWindow }
}

/** The earliest time at which a `tick` must be fed, or null when nothing is due on its own. */
export function nextDeadline (s: WatchdogState): number | null {
  const candidates: number[] = []
  if (s.maintenance !== null && s.maintenance.until !== null) candidates.push(s.maintenance.until)
  if (s.revert !== null && !s.revert.inFlight && s.revert.retryAt !== null) candidates.push(s.revert.retryAt)
  if (isWatching(s)) {
    if (s.phase === 'starting') candidates.push(s.startDeadline)
    else if (s.phase === 'healthy' && s.lateAt !== null) candidates.push(s.lateAt)
    else if (s.phase === 'late' && s.timeoutAt !== null) candidates.push(s.timeoutAt)
    else if (s.phase === 'grace' && s.grace !== null) candidates.push(s.grace.until)
  }
  return candidates.length === 0 ? null : Math.min(...candidates)
}
