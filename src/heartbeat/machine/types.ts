// The machine's types: its settings, state, events and actions. No code.
import type { HeartbeatSettings } from '../../config/schema.ts'
import type {
  Counters, LastRevert, Maintenance, MaintenanceReason, PersistedWatchdogState, RevertOutcome, RevertSource
} from '../persisted.ts'
import type { GapWindow } from './detector.ts'

export type { Maintenance, MaintenanceReason, PersistedWatchdogState, RevertSource, LastRevert, Counters, RevertOutcome }
export type { GapWindow }

export type MachineSettings = HeartbeatSettings & {
  /** Seconds; a guest may not cause reverts more often than this. Default 60. */
  guest_revert_min_interval?: number
}

/** The watch phase. 'reverting' while a revert runs or waits to be retried. */
export type Phase = 'starting' | 'healthy' | 'late' | 'reverting' | 'grace'
export type PublicState = Phase | 'maintenance' | 'exhausted'
/** Who asks for a revert: the guest, a technician, the opening-hours schedule, or the frozen-screen detector. */
export type RequestSource = 'guest' | 'technician' | 'schedule' | 'screen'

export interface RevertJob {
  reason: string
  source: RevertSource
  detail: string | null
  escalate: boolean
  /** 1 for the first libvirt call; retries count up. */
  attempt: number
  /** When the revert was decided (recovery time is measured from here). */
  startedAt: number
  /** A libvirt call is running; false while waiting for retryAt. */
  inFlight: boolean
  retryAt: number | null
  lastError: string | null
}

export interface Grace {
  until: number
  revertStartedAt: number
  reason: string
  source: RevertSource
  escalate: boolean
}

export interface WatchdogState {
  phase: Phase
  /** When the phase began. */
  phaseSince: number
  /** Phase 'starting': the first moment a missing heartbeat may cause a revert. */
  startDeadline: number
  grace: Grace | null
  revert: RevertJob | null
  lastHeartbeatAt: number | null
  /** lastHeartbeatAt + heartbeat_timeout / 2: the early warning ('late'). */
  lateAt: number | null
  /**
   * The revert: lastHeartbeatAt + heartbeat_timeout, or with heartbeat_detector 'adaptive' and
   * enough gaps in the window, where φ reaches phi_threshold (within adaptive_min_timeout and
   * heartbeat_timeout).
   */
  timeoutAt: number | null
  /** Inter-arrival times while watching (adaptive detector only); cleared at start, on watching afresh and at every revert. */
  gapWindow: GapWindow
  lastSeq: number | null
  lastStatus: string | null
  heartbeatsTotal: number
  /** What libvirt last said (null: not known yet). */
  vmRunning: boolean | null
  vmReason: string | null
  maintenance: Maintenance | null
  exhausted: { at: number, reason: string } | null
  escalated: boolean
  /** Times of automatic and guest-caused reverts (not retries, not technician or schedule ones). */
  recentReverts: number[]
  lastGuestRevertAt: number | null
  counters: Counters
  lastRevert: LastRevert | null
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type AlertKind = 'exhausted' | 'revert_storm' | 'recovered'

export interface AuditRecord {
  kind: string
  reason: string
  [field: string]: unknown
}

export type Action =
  | {
    type: 'revert'
    reason: string
    source: RevertSource
    detail: string | null
    /** Destroy the domain first (the one escalated revert before giving up). */
    escalate: boolean
    attempt: number
    /** The deadline whose passing caused this revert (for the start-latency measurement), or null. */
    dueAt: number | null
  }
  | { type: 'destroy', reason: string }
  | { type: 'shutdown', reason: string }
  | { type: 'log', level: LogLevel, msg: string, fields: Record<string, unknown> }
  | { type: 'audit', entry: AuditRecord }
  | { type: 'alert', kind: AlertKind, reason: string, fields: Record<string, unknown> }
  | { type: 'persist' }

export type MachineEvent =
  | { type: 'heartbeat', seq?: number | undefined, status?: string | undefined }
  | { type: 'tick' }
  | { type: 'vm_state', running: boolean, reason: string }
  | { type: 'revert_requested', reason: string, source: RequestSource }
  | { type: 'revert_finished', durationMs: number, deadlineLagMs?: number | null }
  /** vmRunning: what libvirt said after the failed attempt (null: not read). */
  | { type: 'revert_failed', error: string, vmRunning?: boolean | null }
  | { type: 'maintenance_on', until: number | null, reason?: 'technician' | 'config', note?: string | null }
  | { type: 'maintenance_off' }
  | { type: 'stop_requested' }
  | { type: 'start_requested' }
  | { type: 'reset' }
  | { type: 'schedule', open: boolean }
  /** libvirt is reachable again: a revert waiting for its backoff retry runs now. */
  | { type: 'retry_now', why: string }
  /**
   * libvirt answered and the VM's state was read for the first time since the service started
   * (the runtime sends it once, arming no timer before it): the start grace counts from here.
   */
  | { type: 'vm_state_known' }

export interface RequestResult {
  outcome: 'started' | 'coalesced' | 'refused'
  why?: string
}

export interface StepResult {
  state: WatchdogState
  actions: Action[]
  /** The answer to revert_requested / start_requested. */
  outcome?: RequestResult
}
