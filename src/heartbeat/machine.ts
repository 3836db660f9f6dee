// The heartbeat state machine of one VM: step(state, event, now, settings) -> { state, actions }.
// Pure: no timers, no I/O, no clock. Time comes in as `now` (epoch ms); the runtime
// (watchdog.ts) arms one timer at nextDeadline(state) and feeds a `tick` when it fires, and
// carries out the actions (revert, destroy, shutdown, log, audit, alert, persist).
//
// The reported state is one of starting | healthy | late | reverting | grace | maintenance |
// exhausted. Manual stop and closing hours are maintenance with their own `reason` ('stopped',
// 'closed'), next to 'technician' and 'config' (auto_revert_enabled: false), so a dashboard
// needs one rule: "maintenance means nothing reverts on its own", and the reason says why.
import type { VmConfig } from '../config/schema.ts'
import {
  emptyCounters, type Counters, type LastRevert, type Maintenance, type MaintenanceReason,
  type PersistedWatchdogState, type RevertOutcome, type RevertSource
} from './persisted.ts'

export type { Maintenance, MaintenanceReason, PersistedWatchdogState, RevertSource, LastRevert, Counters, RevertOutcome }

export type MachineSettings = Pick<VmConfig,
  'heartbeat_timeout' | 'startup_grace' | 'post_revert_grace' | 'auto_revert_enabled' | 'max_reverts' |
  'revert_window' | 'revert_retry_initial' | 'revert_retry_max'> & {
  /** Seconds; a guest may not cause reverts more often than this. Default 60. */
    guest_revert_min_interval?: number
  }

export const GUEST_REVERT_MIN_INTERVAL_DEFAULT = 60

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
  /** lastHeartbeatAt + heartbeat_timeout: the revert. */
  timeoutAt: number | null
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
  | { type: 'revert_failed', error: string }
  | { type: 'maintenance_on', until: number | null, reason?: 'technician' | 'config', note?: string | null }
  | { type: 'maintenance_off' }
  | { type: 'stop_requested' }
  | { type: 'start_requested' }
  | { type: 'reset' }
  | { type: 'schedule', open: boolean }
  /** libvirt is reachable again: a revert waiting for its backoff retry runs now. */
  | { type: 'retry_now', why: string }

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

// ---------------------------------------------------------------------------------------------

interface Timing {
  timeoutMs: number
  lateMs: number
  startupMs: number
  graceMs: number
  maxReverts: number
  windowMs: number
  retryInitialMs: number
  retryMaxMs: number
  guestMinMs: number
}

const ms = (seconds: number) => Math.round(seconds * 1000)

function timing (s: MachineSettings): Timing {
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
    guestMinMs: ms(s.guest_revert_min_interval ?? GUEST_REVERT_MIN_INTERVAL_DEFAULT)
  }
}

/** Keys of byReason are capped so free-text guest reasons cannot grow the state file forever. */
const MAX_REASON_KEYS = 50

interface Ctx {
  s: WatchdogState
  now: number
  t: Timing
  actions: Action[]
  outcome?: RequestResult
}

function log (c: Ctx, level: LogLevel, msg: string, fields: Record<string, unknown> = {}) {
  c.actions.push({ type: 'log', level, msg, fields })
}

function audit (c: Ctx, kind: string, reason: string, fields: Record<string, unknown> = {}) {
  c.actions.push({ type: 'audit', entry: { kind, reason, ...fields } })
}

function bump (record: Record<string, number>, key: string) {
  if (!(key in record) && Object.keys(record).length >= MAX_REASON_KEYS) key = 'other'
  record[key] = (record[key] ?? 0) + 1
}

function isWatching (s: WatchdogState): boolean {
  return s.maintenance === null && s.exhausted === null && s.revert === null
}

function setPhase (c: Ctx, phase: Phase) {
  if (c.s.phase !== phase) c.s.phaseSince = c.now
  c.s.phase = phase
}

/** Heartbeats count as flowing while the last one is younger than the early-warning mark. */
function heartbeatsFlowing (c: Ctx): boolean {
  return c.s.lastHeartbeatAt !== null && c.now - c.s.lastHeartbeatAt < c.t.lateMs
}

/**
 * Start watching afresh (service start, end of maintenance, reset): never revert the instant
 * watching begins for want of heartbeats; but a VM known to be off must come up at once.
 */
function beginWatch (c: Ctx, why: string) {
  c.s.grace = null
  if (heartbeatsFlowing(c)) {
    setPhase(c, 'healthy')
  } else {
    setPhase(c, 'starting')
    c.s.startDeadline = c.now + c.t.startupMs
  }
  log(c, 'info', `watching again (${why})`, { phase: c.s.phase, startDeadline: c.s.phase === 'starting' ? c.s.startDeadline : null })
  if (isWatching(c.s) && c.s.vmRunning === false) {
    triggerAuto(c, 'vm_not_running', 'auto', c.s.vmReason ?? 'not running', null)
  }
}

function atRevertLimit (c: Ctx): boolean {
  pruneReverts(c)
  return c.s.recentReverts.length >= c.t.maxReverts
}

function pruneReverts (c: Ctx) {
  const from = c.now - c.t.windowMs
  if (c.s.recentReverts.some((at) => at <= from)) c.s.recentReverts = c.s.recentReverts.filter((at) => at > from)
  if (c.s.escalated && c.s.recentReverts.length < c.t.maxReverts) {
    c.s.escalated = false
    log(c, 'info', 'revert window has room again; escalation re-armed', { recentReverts: c.s.recentReverts.length })
  }
}

interface RevertSpec {
  reason: string
  source: RevertSource
  detail: string | null
  escalate: boolean
  dueAt: number | null
}

function startRevert (c: Ctx, spec: RevertSpec) {
  const counted = spec.source === 'auto' || spec.source === 'guest'
  if (counted) c.s.recentReverts.push(c.now)
  if (spec.source === 'guest') c.s.lastGuestRevertAt = c.now
  c.s.revert = {
    reason: spec.reason,
    source: spec.source,
    detail: spec.detail,
    escalate: spec.escalate,
    attempt: 1,
    startedAt: c.now,
    inFlight: true,
    retryAt: null,
    lastError: null
  }
  c.s.grace = null
  setPhase(c, 'reverting')
  c.s.counters.reverts++
  bump(c.s.counters.byReason, spec.source === 'guest' ? `guest:${spec.reason}` : spec.reason)
  bump(c.s.counters.bySource, spec.source)
  c.s.lastRevert = {
    at: c.now,
    reason: spec.reason,
    source: spec.source,
    escalate: spec.escalate,
    attempts: 1,
    durationMs: null,
    outcome: 'in_progress',
    recoveryMs: null,
    error: null
  }
  const fields = {
    reason: spec.reason,
    source: spec.source,
    detail: spec.detail,
    escalate: spec.escalate,
    recentReverts: c.s.recentReverts.length,
    maxReverts: c.t.maxReverts,
    dueAt: spec.dueAt
  }
  log(c, spec.escalate ? 'warn' : 'info', `revert: ${spec.reason}${spec.escalate ? ' (escalated: destroy, then revert)' : ''}`, fields)
  audit(c, 'revert_started', spec.reason, {
    source: spec.source,
    detail: spec.detail,
    escalate: spec.escalate,
    recentReverts: c.s.recentReverts.length,
    lateByMs: spec.dueAt === null ? null : c.now - spec.dueAt
  })
  c.actions.push({ type: 'revert', reason: spec.reason, source: spec.source, detail: spec.detail, escalate: spec.escalate, attempt: 1, dueAt: spec.dueAt })
}

function exhaust (c: Ctx, reason: string, fields: Record<string, unknown>) {
  if (c.s.exhausted !== null) return
  c.s.exhausted = { at: c.now, reason }
  c.s.grace = null
  if (c.s.phase === 'grace') setPhase(c, 'starting')
  c.s.counters.exhaustions++
  log(c, 'error', `reverts exhausted: ${reason}; the VM is left as it is until a technician acts`, fields)
  audit(c, 'exhausted', reason, fields)
  c.actions.push({ type: 'alert', kind: 'exhausted', reason, fields })
}

/**
 * An automatic or guest-caused revert, subject to the loop limit: below max_reverts within the
 * window a normal revert; at the limit ONE escalated revert (destroy first); then exhausted.
 */
function triggerAuto (c: Ctx, reason: string, source: 'auto' | 'guest', detail: string | null, dueAt: number | null): 'started' | 'exhausted' {
  pruneReverts(c)
  const count = c.s.recentReverts.length
  if (count < c.t.maxReverts) {
    startRevert(c, { reason, source, detail, escalate: false, dueAt })
    return 'started'
  }
  if (!c.s.escalated) {
    c.s.escalated = true
    c.s.counters.escalations++
    const fields = { trigger: reason, recentReverts: count, maxReverts: c.t.maxReverts, windowSeconds: c.t.windowMs / 1000 }
    c.actions.push({ type: 'alert', kind: 'revert_storm', reason: `${count} reverts within ${c.t.windowMs / 1000} s; escalating`, fields })
    audit(c, 'escalation', reason, fields)
    startRevert(c, { reason, source, detail, escalate: true, dueAt })
    return 'started'
  }
  exhaust(c, `${count} reverts within ${c.t.windowMs / 1000} s and the escalated revert did not help (last trigger: ${reason})`, {
    trigger: reason, source, detail, recentReverts: count, maxReverts: c.t.maxReverts
  })
  return 'exhausted'
}

function clearExhausted (c: Ctx, by: string) {
  if (c.s.exhausted === null) return
  log(c, 'info', `exhausted cleared by ${by}`, { exhaustedSince: c.s.exhausted.at })
  audit(c, 'exhausted_cleared', by, { exhaustedSince: c.s.exhausted.at })
  c.s.exhausted = null
  // A technician took over: the loop limit starts fresh.
  c.s.escalated = false
  c.s.recentReverts = []
}

/** Drops a revert waiting for its retry (never one whose libvirt call is running). */
function cancelPendingRetry (c: Ctx, why: string, keep: (job: RevertJob) => boolean = () => false) {
  const job = c.s.revert
  if (job === null || job.inFlight || keep(job)) return
  c.s.revert = null
  setPhase(c, 'starting')
  c.s.startDeadline = c.now + c.t.startupMs
  bump(c.s.counters.outcomes, 'cancelled')
  if (c.s.lastRevert) c.s.lastRevert.outcome = 'cancelled'
  log(c, 'info', `pending revert retry cancelled: ${why}`, { reason: job.reason, attempt: job.attempt })
  audit(c, 'revert_cancelled', why, { revertReason: job.reason, source: job.source, attempts: job.attempt })
}

/** A temporary maintenance (closed, stopped) keeps the standing one under it. */
function standing (m: Maintenance | null): Maintenance | null {
  if (m === null) return null
  return m.reason === 'technician' || m.reason === 'config' ? m : m.previous
}

function restorePrevious (c: Ctx, m: Maintenance): Maintenance | null {
  const prev = m.previous
  if (prev !== null && prev.until !== null && prev.until <= c.now) return null
  return prev
}

/** After maintenance ended in some way: watch afresh unless another maintenance is still on. */
function afterMaintenanceChange (c: Ctx, why: string) {
  if (c.s.maintenance === null && c.s.exhausted === null && c.s.revert === null) beginWatch(c, why)
}

// ---------------------------------------------------------------------------------------------
// Events

function onHeartbeat (c: Ctx, e: Extract<MachineEvent, { type: 'heartbeat' }>) {
  const s = c.s
  const gap = s.lastHeartbeatAt === null ? null : c.now - s.lastHeartbeatAt
  s.lastHeartbeatAt = c.now
  s.lateAt = c.now + c.t.lateMs
  s.timeoutAt = c.now + c.t.timeoutMs
  s.lastSeq = typeof e.seq === 'number' && Number.isFinite(e.seq) ? e.seq : null
  s.lastStatus = typeof e.status === 'string' ? e.status : null
  s.heartbeatsTotal++
  switch (s.phase) {
    case 'starting':
      setPhase(c, 'healthy')
      log(c, 'info', 'first heartbeat', { seq: s.lastSeq })
      break
    case 'late':
      setPhase(c, 'healthy')
      log(c, 'info', 'heartbeat back after a gap', { gapMs: gap, seq: s.lastSeq })
      break
    case 'grace': {
      const g = s.grace
      if (g === null) { setPhase(c, 'healthy'); break }
      const recoveryMs = c.now - g.revertStartedAt
      s.grace = null
      setPhase(c, 'healthy')
      bump(s.counters.outcomes, 'recovered')
      if (s.lastRevert && s.lastRevert.at === g.revertStartedAt) {
        s.lastRevert.outcome = 'recovered'
        s.lastRevert.recoveryMs = recoveryMs
      }
      log(c, 'info', 'first heartbeat after the revert: recovered', { recoveryMs, reason: g.reason, seq: s.lastSeq })
      audit(c, 'recovery', g.reason, { source: g.source, recoveryMs, escalate: g.escalate })
      if (g.escalate) c.actions.push({ type: 'alert', kind: 'recovered', reason: 'heartbeats are back after the escalated revert', fields: { recoveryMs } })
      break
    }
    case 'reverting': {
      // Heartbeats while a failed revert waits for its retry: if the revert was for missing
      // heartbeats, the guest is evidently alive, so the retry is moot.
      const job = s.revert!
      if (!job.inFlight && job.source === 'auto' && job.reason !== 'vm_not_running') {
        cancelPendingRetry(c, 'heartbeats are back')
        setPhase(c, 'healthy')
      }
      break
    }
    case 'healthy':
      break
  }
}

function retry (c: Ctx, job: RevertJob) {
  job.attempt++
  job.inFlight = true
  job.retryAt = null
  if (c.s.lastRevert && c.s.lastRevert.at === job.startedAt) {
    c.s.lastRevert.attempts = job.attempt
    c.s.lastRevert.outcome = 'in_progress'
  }
  log(c, 'info', `revert retry ${job.attempt}: ${job.reason}`, { reason: job.reason, attempt: job.attempt, lastError: job.lastError })
  c.actions.push({ type: 'revert', reason: job.reason, source: job.source, detail: job.detail, escalate: job.escalate, attempt: job.attempt, dueAt: null })
}

function onRetryNow (c: Ctx, why: string) {
  const job = c.s.revert
  if (job === null || job.inFlight) return
  log(c, 'info', `retrying the revert now: ${why}`, { reason: job.reason, plannedAt: job.retryAt })
  retry(c, job)
}

function onTick (c: Ctx) {
  const s = c.s
  if (s.maintenance !== null && s.maintenance.until !== null && c.now >= s.maintenance.until) {
    const ended = s.maintenance
    s.maintenance = restorePrevious(c, ended)
    log(c, 'info', 'maintenance ended (its time is up)', { reason: ended.reason, since: ended.since, until: ended.until })
    audit(c, 'maintenance_expired', ended.reason, { since: ended.since, until: ended.until })
    afterMaintenanceChange(c, 'maintenance expired')
  }
  const job = s.revert
  if (job !== null && !job.inFlight && job.retryAt !== null && c.now >= job.retryAt) {
    retry(c, job)
    return
  }
  if (!isWatching(s)) return
  if (s.phase === 'starting' && c.now >= s.startDeadline) {
    triggerAuto(c, 'no_heartbeat_after_start', 'auto', `no heartbeat within ${c.t.startupMs / 1000} s of watching`, s.startDeadline)
    return
  }
  if (s.phase === 'healthy' && s.lateAt !== null && c.now >= s.lateAt) {
    setPhase(c, 'late')
    log(c, 'warn', 'heartbeat late', { lastHeartbeatAt: s.lastHeartbeatAt, revertAt: s.timeoutAt })
  }
  if (s.phase === 'late' && s.timeoutAt !== null && c.now >= s.timeoutAt) {
    const dueAt = s.timeoutAt
    triggerAuto(c, 'heartbeat_timeout', 'auto', `no heartbeat for ${c.t.timeoutMs / 1000} s`, dueAt)
    return
  }
  if (s.phase === 'grace' && s.grace !== null && c.now >= s.grace.until) {
    const g = s.grace
    s.grace = null
    bump(s.counters.outcomes, 'no_heartbeat')
    if (s.lastRevert && s.lastRevert.at === g.revertStartedAt) s.lastRevert.outcome = 'no_heartbeat'
    audit(c, 'no_recovery', g.reason, { source: g.source, escalate: g.escalate, graceMs: c.t.graceMs })
    if (g.escalate) {
      exhaust(c, `no heartbeat within ${c.t.graceMs / 1000} s of the escalated revert`, { trigger: 'no_heartbeat_after_revert', recentReverts: s.recentReverts.length })
    } else {
      triggerAuto(c, 'no_heartbeat_after_revert', 'auto', `no heartbeat within ${c.t.graceMs / 1000} s of the revert (${g.reason})`, g.until)
    }
  }
}

function onVmState (c: Ctx, e: Extract<MachineEvent, { type: 'vm_state' }>) {
  const s = c.s
  if (s.revert !== null) return // lifecycle noise of our own revert (stopped/started from_snapshot)
  if (s.vmRunning !== e.running) log(c, e.running ? 'info' : 'warn', `VM is ${e.running ? 'running' : 'not running'}`, { reason: e.reason })
  s.vmRunning = e.running
  s.vmReason = e.reason
  if (!e.running && isWatching(s)) triggerAuto(c, 'vm_not_running', 'auto', e.reason, null)
}

function refuse (c: Ctx, why: string): void {
  c.outcome = { outcome: 'refused', why }
}

function onRevertRequested (c: Ctx, e: Extract<MachineEvent, { type: 'revert_requested' }>) {
  const s = c.s
  const reason = e.reason
  if (e.source === 'technician') {
    if (s.revert?.inFlight) {
      c.outcome = { outcome: 'coalesced', why: `a revert (${s.revert.reason}) is already running` }
    } else {
      clearExhausted(c, 'technician revert')
      // Reverting a stopped VM starts it: "stopped" would no longer be true.
      if (s.maintenance?.reason === 'stopped') s.maintenance = restorePrevious(c, s.maintenance)
      if (s.revert !== null) {
        s.revert = null // a pending retry is replaced by the technician's revert, right now
      }
      startRevert(c, { reason, source: 'technician', detail: null, escalate: false, dueAt: null })
      c.outcome = { outcome: 'started' }
    }
  } else if (s.maintenance !== null) {
    refuse(c, `maintenance (${s.maintenance.reason}${s.maintenance.until === null ? '' : `, until ${new Date(s.maintenance.until).toISOString()}`}): no reverts except by a technician`)
  } else if (s.exhausted !== null) {
    refuse(c, `reverts are exhausted (${s.exhausted.reason}); a technician must reset`)
  } else if (s.revert !== null || s.phase === 'grace') {
    c.outcome = { outcome: 'coalesced', why: s.revert !== null ? `a revert (${s.revert.reason}) is under way` : 'a revert just finished; waiting for the first heartbeat' }
  } else if (e.source === 'guest' && s.lastGuestRevertAt !== null && c.now - s.lastGuestRevertAt < c.t.guestMinMs) {
    refuse(c, `the guest caused a revert ${Math.round((c.now - s.lastGuestRevertAt) / 1000)} s ago; at most one every ${c.t.guestMinMs / 1000} s`)
  } else if (e.source === 'guest' && atRevertLimit(c)) {
    // At the limit a guest is refused rather than counted: a looping guest script must not be
    // able to escalate, and then switch its own watchdog off (exhausted). A real hang still
    // reverts (and escalates) through the heartbeat timeout.
    refuse(c, `revert limit reached: ${s.recentReverts.length} reverts within revert_window; a guest cannot ask for more (a hang is still reverted)`)
  } else if (e.source === 'guest' || e.source === 'screen') {
    // A frozen screen is detected like a hang: it counts toward the loop limit as a timeout does.
    const r = e.source === 'guest' ? triggerAuto(c, reason, 'guest', null, null) : triggerAuto(c, reason, 'auto', 'screen detector', null)
    c.outcome = r === 'started' ? { outcome: 'started' } : { outcome: 'refused', why: `revert limit reached: ${c.s.exhausted?.reason ?? 'exhausted'}` }
  } else {
    startRevert(c, { reason, source: 'schedule', detail: null, escalate: false, dueAt: null })
    c.outcome = { outcome: 'started' }
  }
  const outcome = c.outcome!
  bump(s.counters.requests, outcome.outcome)
  if (outcome.outcome !== 'started') {
    log(c, 'info', `revert request ${outcome.outcome}: ${reason}`, { source: e.source, why: outcome.why })
  }
  audit(c, 'revert_request', reason, { source: e.source, outcome: outcome.outcome, why: outcome.why ?? null })
}

function onRevertFinished (c: Ctx, e: Extract<MachineEvent, { type: 'revert_finished' }>) {
  const s = c.s
  const job = s.revert
  if (job === null || !job.inFlight) {
    log(c, 'warn', 'revert_finished without a running revert; ignored', {})
    return
  }
  s.revert = null
  s.vmRunning = true
  s.vmReason = 'reverted'
  s.grace = { until: c.now + c.t.graceMs, revertStartedAt: job.startedAt, reason: job.reason, source: job.source, escalate: job.escalate }
  setPhase(c, 'grace')
  if (s.lastRevert && s.lastRevert.at === job.startedAt) {
    s.lastRevert.durationMs = e.durationMs
    s.lastRevert.outcome = 'awaiting_heartbeat'
    s.lastRevert.error = null
  }
  log(c, 'info', `revert done in ${e.durationMs} ms; waiting up to ${c.t.graceMs / 1000} s for the first heartbeat`, { reason: job.reason, attempt: job.attempt, durationMs: e.durationMs })
  audit(c, 'revert_finished', job.reason, {
    source: job.source,
    escalate: job.escalate,
    attempts: job.attempt,
    durationMs: e.durationMs,
    totalMs: c.now - job.startedAt,
    deadlineLagMs: e.deadlineLagMs ?? null
  })
}

function onRevertFailed (c: Ctx, e: Extract<MachineEvent, { type: 'revert_failed' }>) {
  const s = c.s
  const job = s.revert
  if (job === null || !job.inFlight) {
    log(c, 'warn', 'revert_failed without a running revert; ignored', { error: e.error })
    return
  }
  bump(s.counters.outcomes, 'failed_attempts')
  job.inFlight = false
  job.lastError = e.error
  if (s.lastRevert && s.lastRevert.at === job.startedAt) s.lastRevert.error = e.error
  // Maintenance began (or the VM was stopped) while the call ran: only a technician's revert is retried.
  if (job.source !== 'technician' && s.maintenance !== null) {
    s.revert = null
    setPhase(c, 'starting')
    s.startDeadline = c.now + c.t.startupMs
    bump(s.counters.outcomes, 'abandoned')
    if (s.lastRevert && s.lastRevert.at === job.startedAt) s.lastRevert.outcome = 'abandoned'
    log(c, 'error', `revert failed and is not retried (maintenance: ${s.maintenance.reason}): ${e.error}`, { reason: job.reason, attempt: job.attempt })
    audit(c, 'revert_failed', job.reason, { source: job.source, attempt: job.attempt, error: e.error, retryInMs: null })
    return
  }
  const delay = Math.min(c.t.retryInitialMs * 2 ** (job.attempt - 1), c.t.retryMaxMs)
  job.retryAt = c.now + delay
  if (s.lastRevert && s.lastRevert.at === job.startedAt) s.lastRevert.outcome = 'retrying'
  log(c, 'error', `revert failed (attempt ${job.attempt}); retrying in ${delay / 1000} s: ${e.error}`, { reason: job.reason, attempt: job.attempt, retryAt: job.retryAt })
  audit(c, 'revert_failed', job.reason, { source: job.source, attempt: job.attempt, error: e.error, retryInMs: delay })
}

function onMaintenanceOn (c: Ctx, e: Extract<MachineEvent, { type: 'maintenance_on' }>) {
  const s = c.s
  const reason: MaintenanceReason = e.reason ?? 'technician'
  clearExhausted(c, `maintenance (${reason})`)
  cancelPendingRetry(c, 'maintenance began', (job) => job.source === 'technician')
  s.maintenance = { reason, until: e.until, since: c.now, note: e.note ?? null, previous: null }
  log(c, 'info', `maintenance on (${reason})${e.until === null ? ', no expiry' : ` until ${new Date(e.until).toISOString()}`}`, { reason, until: e.until, note: e.note ?? null })
  audit(c, 'maintenance_on', reason, { until: e.until, note: e.note ?? null })
}

function onMaintenanceOff (c: Ctx) {
  const s = c.s
  const was = s.maintenance
  clearExhausted(c, 'maintenance off')
  s.maintenance = null
  log(c, 'info', 'maintenance off', { was: was?.reason ?? null })
  audit(c, 'maintenance_off', was?.reason ?? 'none', { since: was?.since ?? null })
  afterMaintenanceChange(c, 'maintenance off')
}

function onStopRequested (c: Ctx) {
  const s = c.s
  clearExhausted(c, 'stop')
  cancelPendingRetry(c, 'the VM is being stopped')
  const previous = standing(s.maintenance)
  s.maintenance = { reason: 'stopped', until: null, since: c.now, note: null, previous }
  log(c, 'info', 'VM stopped by a technician; no reverts until it is started', {})
  audit(c, 'vm_stop', 'technician', {})
  c.actions.push({ type: 'destroy', reason: 'technician stop' })
}

function onStartRequested (c: Ctx) {
  const s = c.s
  if (s.maintenance?.reason === 'stopped' || s.maintenance?.reason === 'closed') s.maintenance = restorePrevious(c, s.maintenance)
  clearExhausted(c, 'start')
  audit(c, 'vm_start', 'technician', {})
  if (s.revert?.inFlight) {
    c.outcome = { outcome: 'coalesced', why: `a revert (${s.revert.reason}) is already running` }
    return
  }
  s.revert = null
  startRevert(c, { reason: 'technician_start', source: 'technician', detail: null, escalate: false, dueAt: null })
  c.outcome = { outcome: 'started' }
}

function onReset (c: Ctx) {
  if (c.s.exhausted === null) {
    log(c, 'info', 'reset: nothing to reset (not exhausted)', {})
    return
  }
  clearExhausted(c, 'reset')
  afterMaintenanceChange(c, 'reset')
}

function onSchedule (c: Ctx, open: boolean) {
  const s = c.s
  if (!open) {
    if (s.maintenance?.reason === 'closed' || s.maintenance?.reason === 'stopped') {
      log(c, 'info', `closing time; already ${s.maintenance.reason}`, {})
      return
    }
    cancelPendingRetry(c, 'closing time', (job) => job.source === 'technician')
    s.maintenance = { reason: 'closed', until: null, since: c.now, note: null, previous: standing(s.maintenance) }
    log(c, 'info', 'closing time: shutting the VM down', {})
    audit(c, 'schedule_close', 'schedule', {})
    c.actions.push({ type: 'shutdown', reason: 'closing time' })
    return
  }
  if (s.maintenance?.reason !== 'closed') {
    log(c, 'debug', 'opening time; was not closed, nothing to do', { maintenance: s.maintenance?.reason ?? null })
    return
  }
  s.maintenance = restorePrevious(c, s.maintenance)
  audit(c, 'schedule_open', 'schedule', { maintenance: s.maintenance?.reason ?? null })
  if (s.maintenance !== null || s.exhausted !== null) {
    log(c, 'warn', `opening time, but ${s.maintenance !== null ? `maintenance (${s.maintenance.reason})` : 'reverts are exhausted'}: the VM stays as it is`, {})
    return
  }
  if (s.revert?.inFlight) return
  s.revert = null
  startRevert(c, { reason: 'schedule_open', source: 'schedule', detail: null, escalate: false, dueAt: null })
}

// ---------------------------------------------------------------------------------------------
// Public functions

export function step (state: WatchdogState, event: MachineEvent, now: number, settings: MachineSettings): StepResult {
  // The hot path (a heartbeat while healthy: nothing but the record changes) skips the deep copy.
  if (event.type === 'heartbeat' && state.phase === 'healthy' && state.revert === null) {
    const t = timing(settings)
    return {
      state: {
        ...state,
        lastHeartbeatAt: now,
        lateAt: now + t.lateMs,
        timeoutAt: now + t.timeoutMs,
        lastSeq: typeof event.seq === 'number' && Number.isFinite(event.seq) ? event.seq : null,
        lastStatus: typeof event.status === 'string' ? event.status : null,
        heartbeatsTotal: state.heartbeatsTotal + 1
      },
      actions: []
    }
  }
  const c: Ctx = { s: structuredClone(state), now, t: timing(settings), actions: [] }
  switch (event.type) {
    case 'heartbeat': onHeartbeat(c, event); break
    case 'tick': onTick(c); break
    case 'vm_state': onVmState(c, event); break
    case 'revert_requested': onRevertRequested(c, event); break
    case 'revert_finished': onRevertFinished(c, event); break
    case 'revert_failed': onRevertFailed(c, event); break
    case 'maintenance_on': onMaintenanceOn(c, event); break
    case 'maintenance_off': onMaintenanceOff(c); break
    case 'stop_requested': onStopRequested(c); break
    case 'start_requested': onStartRequested(c); break
    case 'reset': onReset(c); break
    case 'schedule': onSchedule(c, event.open); break
    case 'retry_now': onRetryNow(c, event.why); break
    default: {
      const unknown: never = event
      throw new TypeError(`unknown watchdog event: ${JSON.stringify(unknown)}`)
    }
  }
  const before = reportedState(state)
  const after = reportedState(c.s)
  if (before !== after) {
    const level: LogLevel = after === 'exhausted' ? 'error' : after === 'late' ? 'warn' : 'info'
    c.actions.push({ type: 'log', level, msg: `state: ${before} -> ${after}`, fields: { from: before, to: after, event: event.type } })
  }
  if (JSON.stringify(toPersisted(state)) !== JSON.stringify(toPersisted(c.s))) c.actions.push({ type: 'persist' })
  const result: StepResult = { state: c.s, actions: c.actions }
  if (c.outcome !== undefined) result.outcome = c.outcome
  return result
}

export function initialState (persisted: PersistedWatchdogState | null, now: number, settings: MachineSettings): WatchdogState {
  const t = timing(settings)
  let maintenance = persisted?.maintenance ?? null
  // Maintenance that ran out while the service was down is over (a standing one under it may remain).
  while (maintenance !== null && maintenance.until !== null && maintenance.until <= now) maintenance = maintenance.previous
  if (maintenance !== null && maintenance.previous !== null && maintenance.previous.until !== null && maintenance.previous.until <= now) {
    maintenance = { ...maintenance, previous: null }
  }
  // auto_revert_enabled: false is standing maintenance; EVC reset its in-memory flag to the config on restart.
  if (!settings.auto_revert_enabled && standing(maintenance) === null) {
    const config: Maintenance = { reason: 'config', until: null, since: now, note: 'auto_revert_enabled: false', previous: null }
    maintenance = maintenance === null ? config : { ...maintenance, previous: config }
  }
  if (settings.auto_revert_enabled && maintenance !== null) {
    if (maintenance.reason === 'config') maintenance = maintenance.previous
    else if (maintenance.previous?.reason === 'config') maintenance = { ...maintenance, previous: null }
  }
  return {
    phase: 'starting',
    phaseSince: now,
    startDeadline: now + t.startupMs,
    grace: null,
    revert: null,
    lastHeartbeatAt: null,
    lateAt: null,
    timeoutAt: null,
    lastSeq: null,
    lastStatus: null,
    heartbeatsTotal: 0,
    vmRunning: null,
    vmReason: null,
    maintenance,
    exhausted: persisted?.exhausted ?? null,
    escalated: persisted?.escalated ?? false,
    recentReverts: (persisted?.recentReverts ?? []).filter((at) => at > now - t.windowMs && at <= now),
    lastGuestRevertAt: persisted?.lastGuestRevertAt ?? null,
    counters: persisted ? structuredClone(persisted.counters) : emptyCounters(),
    lastRevert: persisted?.lastRevert ? { ...persisted.lastRevert } : null
  }
}

export function toPersisted (s: WatchdogState): PersistedWatchdogState {
  return {
    version: 1,
    maintenance: s.maintenance,
    exhausted: s.exhausted,
    escalated: s.escalated,
    recentReverts: s.recentReverts,
    lastGuestRevertAt: s.lastGuestRevertAt,
    counters: s.counters,
    lastRevert: s.lastRevert
  }
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

/** The state name as stored (no look at the clock). */
function reportedState (s: WatchdogState): PublicState {
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
