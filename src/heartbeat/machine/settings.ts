// The settings in the units the machine works in (ms), derived once per step.
import { GUEST_REVERT_MIN_INTERVAL_DEFAULT } from '../../limits.ts'
import type { MachineSettings } from './types.ts'

export { GUEST_REVERT_MIN_INTERVAL_DEFAULT }

export interface Timing {
  timeoutMs: number
  lateMs: number
  startupMs: number
  graceMs: number
  maxReverts: number
  windowMs: number
  retryInitialMs: number
  retryMaxMs: number
  guestMinMs: number
  /** heartbeat_detector is 'adaptive'. */
  adaptive: boolean
  phiThreshold: number
  /** adaptive_min_timeout, never above heartbeat_timeout. */
  adaptiveMinMs: number
  /** adaptive_learning: the fixed rules apply until the window holds this much. */
  adaptiveLearningMs: number
}

export const ms = (seconds: number) => Math.round(seconds * 1000)

export function timing (s: MachineSettings): Timing {
  const timeoutMs = ms(s.heartbeat_timeout)
  return {
    timeoutMs,
    lateMs: Math.floor(timeoutMs / 2),
    startupMs: Math.max(ms(s.startup_grace), timeoutMs),
    graceMs: ms(s.post_revert_grace),
    maxReverts: s.max_reverts,
    windowMs: ms(s.revert_window),
    retryInitialMs: ms(s.revert_retry_initial),
    retryMaxMs: ms(s.revert_retry_max),
    guestMinMs: ms(s.guest_revert_min_interval ?? GUEST_REVERT_MIN_INTERVAL_DEFAULT),
    adaptive: s.heartbeat_detector === 'adaptive',
    phiThreshold: s.phi_threshold,
    adaptiveMinMs: Math.min(ms(s.adaptive_min_timeout), timeoutMs),
    adaptiveLearningMs: ms(s.adaptive_learning)
  }
}
