// The types around one VM's watchdog runtime: what it is given (options, ports) and what it
// tells (its view and events). The runtime itself is watchdog.ts.
import type { VmConfig } from '../config/schema.ts'
import type { Hypervisor } from '../libvirt/index.ts'
import type { Clock, Log, TimerPort } from '../ports/index.ts'
import type { DetectorView, LastRevert, MaintenanceReason, Phase, PublicState, RevertSource } from './machine.ts'
import type { Counters, PersistedWatchdogState } from './persisted.ts'

/** Where the persisted subset lives (src/store's StateFile fits). load() may return anything: it is validated here. */
export interface WatchdogPersistence {
  load (): Promise<unknown>
  save (state: PersistedWatchdogState): Promise<void>
}

export type WatchdogAuditEntry = { vm: string, kind: string, ts: string, reason: string, [field: string]: unknown }

/** The audit trail (src/store's AuditLog fits). */
export interface WatchdogAudit {
  append (entry: WatchdogAuditEntry): Promise<void>
}

export interface WatchdogOptions {
  vm: VmConfig
  hypervisor: Hypervisor
  /** A child logger with the VM's name bound. */
  log: Log
  clock: Clock
  /** The runtime's timers (its deadline, the safety-net poll, the shutdown timeout); tests pass a fake clock. */
  timers: TimerPort
  persistence: WatchdogPersistence
  audit: WatchdogAudit
  /** Seconds between guest-caused reverts (security.guest_revert_min_interval). */
  guestRevertMinInterval: number
  /** After a graceful shutdown at closing time, destroy the VM if it still runs after this long (default 60 s). */
  shutdownTimeoutMs?: number
  /** The snapshot a revert goes to: snapshot/'s resolveRevertTarget (the newest revision of vm.snapshot_name). */
  resolveSnapshot: () => string | Promise<string>
}

export interface WatchdogView {
  vm: string
  /** starting | healthy | late | reverting | grace | maintenance | exhausted */
  state: PublicState
  phase: Phase
  /** Why nothing reverts on its own: technician, config (auto_revert_enabled: false), stopped, closed. */
  maintenance: { reason: MaintenanceReason, until: number | null, since: number, note: string | null } | null
  /** EVC's flag: false while in maintenance of any kind. */
  autoRevertEnabled: boolean
  exhausted: { at: number, reason: string } | null
  escalated: boolean
  /** Epoch ms, or null before the first heartbeat since the service started. */
  lastHeartbeat: number | null
  lastSeq: number | null
  lastStatus: string | null
  lastSource: string | null
  secondsSinceLast: number | null
  heartbeatsTotal: number
  /** heartbeat_timeout, seconds. */
  timeout: number
  recentReverts: number
  maxReverts: number
  lastRevert: LastRevert | null
  /** Epoch ms of the next thing due on its own (late mark, timeout, grace end, retry, maintenance end). */
  nextDeadline: number | null
  /** The hang detector: fixed or adaptive, the effective deadline and φ now. */
  detector: DetectorView
  revertInFlight: boolean
  revert: { reason: string, source: RevertSource, attempt: number, startedAt: number, retryAt: number | null, lastError: string | null } | null
  retryAt: number | null
  vmRunning: boolean | null
  vmReason: string | null
  libvirtConnected: boolean
  /** The label of the libvirt action running in the queue, if any. */
  action: string | null
  counters: Counters
}

export interface RevertEvent {
  vm: string
  phase: 'start' | 'finish'
  reason: string
  source: RevertSource
  escalate: boolean
  attempt: number
  /** Start: ms between the deadline that caused the revert and the libvirt call (null if no deadline). */
  deadlineLagMs: number | null
  /** Finish: the libvirt call's duration. */
  durationMs?: number
  outcome?: 'succeeded' | 'failed'
  error?: string
}

export interface HeartbeatEvent { vm: string, at: number, seq: number | null, status: string | null, source: string | null }
export interface AlertEvent { vm: string, kind: 'exhausted' | 'revert_storm' | 'recovered', reason: string, fields: Record<string, unknown> }

// A type alias (not an interface): EventEmitter's map needs an index-compatible type.
export type WatchdogEvents = {
  change: [WatchdogView]
  revert: [RevertEvent]
  heartbeat: [HeartbeatEvent]
  alert: [AlertEvent]
}

export interface HeartbeatInput { seq?: number | undefined, status?: string | undefined, source?: string | undefined }
