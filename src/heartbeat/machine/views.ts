// What the machine's state says to a reader (status, dashboard, metrics), given the clock.
import { isWatching } from './deadlines.ts'
import { fitModel, phi } from './detector.ts'
import { ms, timing } from './settings.ts'
import type { MachineSettings, PublicState, WatchdogState } from './types.ts'

/** The state name as stored (no look at the clock). */
export function reportedState (s: WatchdogState): PublicState {
  if (s.revert !== null) return 'reverting'
  if (s.exhausted !== null) return 'exhausted'
  if (s.maintenance !== null) return 'maintenance'
  return s.phase
}

/**
 * The state name to report. `now` makes a healthy VM whose early-warning mark has passed read
 * 'late' even before the runtime's tick for it has been fed.
 */
export function publicState (s: WatchdogState, now: number): PublicState {
  const name = reportedState(s)
  if (name === 'healthy' && s.lateAt !== null && now >= s.lateAt) return 'late'
  return name
}

/** Reverts counted against max_reverts at `now`. */
export function recentRevertCount (s: WatchdogState, now: number, settings: MachineSettings): number {
  const from = now - timing(settings).windowMs
  return s.recentReverts.filter((at) => at > from).length
}

export interface DetectorView {
  /** heartbeat_detector. */
  detector: 'fixed' | 'adaptive'
  /** Which rule set the current deadline: 'phi', or 'fixed' (the fixed detector, or too few gaps yet). */
  rule: 'fixed' | 'phi'
  /** Epoch ms at which a missing heartbeat causes a revert (the timeout, or the start or post-revert grace); null when nothing reverts on its own. */
  effectiveDeadline: number | null
  /** Seconds from the last heartbeat to the timeout (while healthy or late), else null. */
  effectiveTimeout: number | null
  /** φ now (adaptive with enough gaps and a heartbeat seen), else null. */
  phi: number | null
  phiThreshold: number | null
  /** Gaps in the window; seconds of heartbeats the window has seen (learning until adaptive_learning). */
  samples: number
  learnedSeconds: number
  /** Mean and longest remembered gap (bucketed: about ±7 %); null while learning. */
  meanGapMs: number | null
  longestGapMs: number | null
}

/** The hang detector's numbers at `now`. */
export function detectorView (s: WatchdogState, now: number, settings: MachineSettings): DetectorView {
  const adaptive = settings.heartbeat_detector === 'adaptive'
  const model = adaptive ? fitModel(s.gapWindow, ms(settings.adaptive_learning)) : null
  const last = s.lastHeartbeatAt
  // The timeout applies while a running guest is watched; before the first heartbeat and after a
  // revert the start and post-revert graces do.
  const watched = isWatching(s) && (s.phase === 'healthy' || s.phase === 'late') && last !== null && s.timeoutAt !== null
  const deadline = !isWatching(s) ? null : watched ? s.timeoutAt : s.phase === 'starting' ? s.startDeadline : s.grace?.until ?? null
  const round = (x: number, places: number) => Math.round(x * 10 ** places) / 10 ** places
  return {
    detector: adaptive ? 'adaptive' : 'fixed',
    rule: model === null || !watched ? 'fixed' : 'phi',
    effectiveDeadline: deadline,
    effectiveTimeout: watched ? (s.timeoutAt! - last) / 1000 : null,
    phi: model === null || !watched ? null : round(phi(model, Math.max(0, now - last)), 3),
    phiThreshold: adaptive ? settings.phi_threshold : null,
    samples: s.gapWindow.samples,
    learnedSeconds: Math.floor(s.gapWindow.learnedMs / 1000),
    meanGapMs: model === null ? null : Math.round(model.meanGapMs),
    longestGapMs: model === null ? null : Math.round(model.longestGapMs)
  }
}
