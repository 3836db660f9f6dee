// The rules several events share: starting a revert, the loop limit (escalate once, then
// exhausted), watching afresh, layered maintenance. Each works on a Ctx: the copy of the state
// being stepped, the time, the settings in ms, and the actions collected so far.
import { isWatching } from './deadlines.ts'
import type { Timing } from './settings.ts'
import type {
  Action, LogLevel, Maintenance, Phase, RequestResult, RevertJob, RevertSource, WatchdogState
} from './types.ts'

/** Keys of byReason are capped so free-text guest reasons cannot grow the state file forever. */
const MAX_REASON_KEYS = 50

export interface Ctx {
  s: WatchdogState
  now: number
  t: Timing
  actions: Action[]
  outcome?: RequestResult
}

export function log (c: Ctx, level: LogLevel, msg: string, fields: Record<string, unknown> = {}) {
  c.actions.push({ type: 'log', level, msg, fields })
}

export function audit (c: Ctx, kind: string, reason: string, fields: Record<string, unknown> = {}) {
  c.actions.push({ type: 'audit', entry: { kind, reason, ...fields } })
}

export function bump (record: Record<string, number>, key: string) {
  if (!(key in record) && Object.keys(record).length >= MAX_REASON_KEYS) key = 'other'
  record[key] = (record[key] ?? 0) + 1
}

export function setPhase (c: Ctx, phase: Phase) {
  if (c.s.phase !== phase) c.s.phaseSince = c.now
  c.s.phase = phase
}

/**
 * Heartbeats count as flowing while the last one's early-warning mark has not passed (half of
 * heartbeat_timeout, or just before the adaptive deadline): watching that begins then never
 * starts with a deadline already behind it.
 */
export function heartbeatsFlowing (c: Ctx): boolean {
  return c.s.lastHeartbeatAt !== null && c.s.lateAt !== null && c.now < c.s.lateAt
}

/**
 * Start watching afresh (service start, end of maintenance, reset): never revert the instant
 * watching begins for want of heartbeats; but a VM known to be off must come up at once.
 */
export function beginWatch (c: Ctx, why: string) {
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

export function atRevertLimit (c: Ctx): boolean {
  pruneReverts(c)
  return c.s.recentReverts.length >= c.t.maxReverts
}

export function pruneReverts (c: Ctx) {
  const from = c.now - c.t.windowMs
  if (c.s.recentReverts.some((at) => at <= from)) c.s.recentReverts = c.s.recentReverts.filter((at) => at > from)
  if (c.s.escalated && c.s.recentReverts.length < c.t.maxReverts) {
    c.s.escalated = false
    log(c, 'info', 'revert window has room again; escalation re-armed', { recentReverts: c.s.recentReverts.length })
  }
}

export interface RevertSpec {
  reason: string
  source: RevertSource
  detail: string | null
  escalate: boolean
  dueAt: number | null
}

export function startRevert (c: Ctx, spec: RevertSpec) {
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
  // The gap window is kept: the reverted guest is the same software from the same snapshot, and
  // forgetting its stalls made the next one look like a hang (bench/README.md). Nothing of the hang
  // or the boot is learned: only gaps between two beats while healthy or late join the window.
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

export function exhaust (c: Ctx, reason: string, fields: Record<string, unknown>) {
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
export function triggerAuto (c: Ctx, reason: string, source: 'auto' | 'guest', detail: string | null, dueAt: number | null): 'started' | 'exhausted' {
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

export function clearExhausted (c: Ctx, by: string) {
  if (c.s.exhausted === null) return
  log(c, 'info', `exhausted cleared by ${by}`, { exhaustedSince: c.s.exhausted.at })
  audit(c, 'exhausted_cleared', by, { exhaustedSince: c.s.exhausted.at })
  c.s.exhausted = null
  // A technician took over: the loop limit starts fresh.
  c.s.escalated = false
  c.s.recentReverts = []
}

/** Drops a revert waiting for its retry (never one whose libvirt call is running). */
export function cancelPendingRetry (c: Ctx, why: string, keep: (job: RevertJob) => boolean = () => false) {
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
export function standing (m: Maintenance | null): Maintenance | null {
  if (m === null) return null
  return m.reason === 'technician' || m.reason === 'config' ? m : m.previous
}

export function restorePrevious (c: Ctx, m: Maintenance): Maintenance | null {
  const prev = m.previous
  if (prev !== null && prev.until !== null && prev.until <= c.now) return null
  return prev
}

/** After maintenance ended in some way: watch afresh unless another maintenance is still on. */
export function afterMaintenanceChange (c: Ctx, why: string) {
  if (c.s.maintenance === null && c.s.exhausted === null && c.s.revert === null) beginWatch(c, why)
}
