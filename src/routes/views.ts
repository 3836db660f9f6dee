// Response schemas that more than one route file answers with, and the one serializer of the
// watchdog view: /status (its `watchdog` field) and the live stream send the same snake_case
// shape, times as ISO 8601.
import { z } from 'zod'
import type { WatchdogView } from '../heartbeat/watchdog.ts'
import { iso } from './schemas.ts'

export const scheduleViewSchema = z.object({
  timezone: z.string(),
  open: z.boolean().describe('What the schedule wants now'),
  next_change: z.string().nullable().describe('When open flips next (ISO 8601); null: never'),
  next_action: z.object({ kind: z.enum(['open', 'close', 'preventive_revert']), at: z.string() }).nullable(),
  last_action: z.object({ kind: z.enum(['open', 'close', 'preventive_revert']), at: z.string() }).nullable()
})

export const screenViewSchema = z.object({
  enabled: z.boolean(),
  interval: z.number(),
  frozen_after: z.number(),
  watching: z.boolean().describe('Samples are compared (the watchdog is healthy or late)'),
  last_sample_at: z.string().nullable(),
  last_change_at: z.string().nullable(),
  unchanged_seconds: z.number().nullable(),
  last_difference: z.object({ meanAbs: z.number(), changedPercent: z.number() }).nullable(),
  last_error: z.string().nullable(),
  last_request: z.object({ reason: z.string(), at: z.string() }).nullable()
})

export const detectorViewSchema = z.object({
  detector: z.enum(['fixed', 'adaptive']).describe('heartbeat_detector'),
  rule: z.enum(['fixed', 'phi']).describe('What set the current deadline: phi (adaptive, enough heartbeats seen) or fixed (heartbeat_timeout)'),
  effective_deadline: z.string().nullable().describe('When a missing heartbeat causes a revert (the timeout, or the start or post-revert grace); null: nothing reverts on its own'),
  effective_timeout: z.number().nullable().describe('Seconds from the last heartbeat to the timeout (healthy or late only)'),
  phi: z.number().nullable().describe('The suspicion level now, -log10(P(the heartbeat is still coming)); null with the fixed detector or too few heartbeats'),
  phi_threshold: z.number().nullable(),
  samples: z.number().describe('Heartbeat gaps remembered'),
  learned_seconds: z.number().describe('Seconds of heartbeats the adaptive detector has seen of this guest, kept across reverts and restarts (learning until adaptive_learning)'),
  mean_gap_ms: z.number().nullable().describe('Mean remembered gap (null while learning)'),
  longest_gap_ms: z.number().nullable().describe('Longest remembered gap, about (bucketed, ±7 %)')
})

export type DetectorViewBody = z.infer<typeof detectorViewSchema>

export function detectorViewBody (d: WatchdogView['detector']): DetectorViewBody {
  return {
    detector: d.detector,
    rule: d.rule,
    effective_deadline: iso(d.effectiveDeadline),
    effective_timeout: d.effectiveTimeout,
    phi: d.phi,
    phi_threshold: d.phiThreshold,
    samples: d.samples,
    learned_seconds: d.learnedSeconds,
    mean_gap_ms: d.meanGapMs,
    longest_gap_ms: d.longestGapMs
  }
}

export const watchdogViewSchema = z.object({
  vm: z.string(),
  state: z.string().describe('starting | healthy | late | reverting | grace | maintenance | exhausted'),
  phase: z.string(),
  maintenance: z.object({ reason: z.string(), until: z.string().nullable(), since: z.string(), note: z.string().nullable() }).nullable(),
  auto_revert_enabled: z.boolean().describe('false while in maintenance of any kind'),
  exhausted: z.object({ at: z.string(), reason: z.string() }).nullable(),
  escalated: z.boolean(),
  last_heartbeat: z.string().nullable().describe('null: none since the service started'),
  last_seq: z.number().nullable(),
  last_status: z.string().nullable(),
  last_source: z.string().nullable(),
  seconds_since_last: z.number().nullable(),
  heartbeats_total: z.number(),
  timeout: z.number().describe('heartbeat_timeout, seconds'),
  recent_reverts: z.number(),
  max_reverts: z.number(),
  last_revert: z.object({
    at: z.string(),
    reason: z.string(),
    source: z.string(),
    escalated: z.boolean(),
    attempts: z.number(),
    duration_ms: z.number().nullable(),
    recovery_ms: z.number().nullable(),
    outcome: z.string(),
    error: z.string().nullable()
  }).nullable(),
  next_deadline: z.string().nullable().describe('The next thing due on its own (late mark, timeout, grace end, retry, maintenance end)'),
  detector: detectorViewSchema.describe('The hang detector: the effective deadline and φ'),
  revert_in_flight: z.boolean(),
  revert: z.object({
    reason: z.string(),
    source: z.string(),
    attempt: z.number(),
    started_at: z.string(),
    retry_at: z.string().nullable(),
    last_error: z.string().nullable()
  }).nullable().describe('The revert under way or waiting to be retried'),
  retry_at: z.string().nullable(),
  vm_running: z.boolean().nullable(),
  vm_reason: z.string().nullable(),
  libvirt_connected: z.boolean(),
  action: z.string().nullable().describe('The libvirt action running in the VM\'s queue'),
  counters: z.object({
    reverts: z.number(),
    by_reason: z.record(z.string(), z.number()),
    by_source: z.record(z.string(), z.number()),
    outcomes: z.record(z.string(), z.number()),
    requests: z.record(z.string(), z.number()),
    escalations: z.number(),
    exhaustions: z.number()
  })
})

export type WatchdogViewBody = z.infer<typeof watchdogViewSchema>

export function watchdogViewBody (view: WatchdogView): WatchdogViewBody {
  const { maintenance: m, lastRevert: r, revert, counters: c } = view
  return {
    vm: view.vm,
    state: view.state,
    phase: view.phase,
    maintenance: m && { reason: m.reason, until: iso(m.until), since: iso(m.since)!, note: m.note },
    auto_revert_enabled: view.autoRevertEnabled,
    exhausted: view.exhausted && { at: iso(view.exhausted.at)!, reason: view.exhausted.reason },
    escalated: view.escalated,
    last_heartbeat: iso(view.lastHeartbeat),
    last_seq: view.lastSeq,
    last_status: view.lastStatus,
    last_source: view.lastSource,
    seconds_since_last: view.secondsSinceLast,
    heartbeats_total: view.heartbeatsTotal,
    timeout: view.timeout,
    recent_reverts: view.recentReverts,
    max_reverts: view.maxReverts,
    last_revert: r && {
      at: iso(r.at)!,
      reason: r.reason,
      source: r.source,
      escalated: r.escalate,
      attempts: r.attempts,
      duration_ms: r.durationMs,
      recovery_ms: r.recoveryMs,
      outcome: r.outcome,
      error: r.error
    },
    next_deadline: iso(view.nextDeadline),
    detector: detectorViewBody(view.detector),
    revert_in_flight: view.revertInFlight,
    revert: revert && {
      reason: revert.reason,
      source: revert.source,
      attempt: revert.attempt,
      started_at: iso(revert.startedAt)!,
      retry_at: iso(revert.retryAt),
      last_error: revert.lastError
    },
    retry_at: iso(view.retryAt),
    vm_running: view.vmRunning,
    vm_reason: view.vmReason,
    libvirt_connected: view.libvirtConnected,
    action: view.action,
    counters: {
      reverts: c.reverts,
      by_reason: c.byReason,
      by_source: c.bySource,
      outcomes: c.outcomes,
      requests: c.requests,
      escalations: c.escalations,
      exhaustions: c.exhaustions
    }
  }
}
