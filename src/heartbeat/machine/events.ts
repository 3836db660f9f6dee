// What each event does to the state. Every handler works on the Ctx that step() prepared.
import { heartbeatDeadlines, isWatching } from './deadlines.ts'
import { fitModel, phi } from './detector.ts'
import {
  afterMaintenanceChange, atRevertLimit, audit, bump, cancelPendingRetry, clearExhausted, exhaust, log,
  restorePrevious, setPhase, standing, startRevert, triggerAuto, type Ctx
} from './rules.ts'
import type { MachineEvent, MaintenanceReason, RevertJob } from './types.ts'

export function onHeartbeat (c: Ctx, e: Extract<MachineEvent, { type: 'heartbeat' }>) {
  const s = c.s
  const gap = s.lastHeartbeatAt === null ? null : c.now - s.lastHeartbeatAt
  const next = heartbeatDeadlines(s, c.now, c.t)
  s.lastHeartbeatAt = c.now
  s.lateAt = next.lateAt
  s.timeoutAt = next.timeoutAt
  s.gapWindow = next.gapWindow
  s.lastSeq = typeof e.seq === 'number' && Number.isFinite(e.seq) ? e.seq : null
  s.lastStatus = typeof e.status === 'string' ? e.status : null
  s.heartbeatsTotal++
  // A heartbeat while libvirt says the VM is not running comes from something else (a tool on
  // loopback, a stale request): it is counted, but it never makes the watchdog healthy.
  if (s.vmRunning === false) {
    if (s.phase !== 'healthy') log(c, 'debug', 'heartbeat while libvirt says the VM is not running: not taken as a sign of life', { phase: s.phase, vmReason: s.vmReason })
    return
  }
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

export function onRetryNow (c: Ctx, why: string) {
  const job = c.s.revert
  if (job === null || job.inFlight) return
  log(c, 'info', `retrying the revert now: ${why}`, { reason: job.reason, plannedAt: job.retryAt })
  retry(c, job)
}

export function onTick (c: Ctx) {
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
    triggerAuto(c, 'heartbeat_timeout', 'auto', timeoutDetail(c, dueAt), dueAt)
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

/** Why the timeout came: the fixed one, or φ at this tick (adaptive). */
function timeoutDetail (c: Ctx, dueAt: number): string {
  const last = c.s.lastHeartbeatAt
  const model = c.t.adaptive ? fitModel(c.s.gapWindow, c.t.adaptiveLearningMs) : null
  if (model === null || last === null) return `no heartbeat for ${c.t.timeoutMs / 1000} s`
  const silentMs = dueAt - last
  const bound = silentMs >= c.t.timeoutMs ? ' (heartbeat_timeout)' : silentMs <= c.t.adaptiveMinMs ? ' (adaptive_min_timeout)' : ''
  return `no heartbeat for ${silentMs / 1000} s${bound}: φ ${phi(model, c.now - last).toFixed(2)}, threshold ${c.t.phiThreshold} ` +
    `(${model.samples} gaps, mean ${Math.round(model.meanGapMs)} ms, longest about ${Math.round(model.longestGapMs)} ms)`
}

/** The start grace runs from the first moment the VM's state is known, not from the service start (libvirt may come later). */
export function onVmStateKnown (c: Ctx) {
  if (c.s.phase !== 'starting' || c.s.revert !== null) return
  c.s.startDeadline = c.now + c.t.startupMs
  log(c, 'info', 'libvirt reached and the VM state read: the start grace runs from now', { startDeadline: c.s.startDeadline })
}

export function onVmState (c: Ctx, e: Extract<MachineEvent, { type: 'vm_state' }>) {
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

export function onRevertRequested (c: Ctx, e: Extract<MachineEvent, { type: 'revert_requested' }>) {
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

export function onRevertFinished (c: Ctx, e: Extract<MachineEvent, { type: 'revert_finished' }>) {
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

export function onRevertFailed (c: Ctx, e: Extract<MachineEvent, { type: 'revert_failed' }>) {
  const s = c.s
  const job = s.revert
  if (job === null || !job.inFlight) {
    log(c, 'warn', 'revert_failed without a running revert; ignored', { error: e.error })
    return
  }
  bump(s.counters.outcomes, 'failed_attempts')
  job.inFlight = false
  job.lastError = e.error
  if (typeof e.vmRunning === 'boolean') {
    s.vmRunning = e.vmRunning
    s.vmReason = e.vmRunning ? 'running after a failed revert' : 'not running after a failed revert'
  }
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

export function onMaintenanceOn (c: Ctx, e: Extract<MachineEvent, { type: 'maintenance_on' }>) {
  const s = c.s
  const reason: MaintenanceReason = e.reason ?? 'technician'
  clearExhausted(c, `maintenance (${reason})`)
  cancelPendingRetry(c, 'maintenance began', (job) => job.source === 'technician')
  s.maintenance = { reason, until: e.until, since: c.now, note: e.note ?? null, previous: null }
  log(c, 'info', `maintenance on (${reason})${e.until === null ? ', no expiry' : ` until ${new Date(e.until).toISOString()}`}`, { reason, until: e.until, note: e.note ?? null })
  audit(c, 'maintenance_on', reason, { until: e.until, note: e.note ?? null })
}

export function onMaintenanceOff (c: Ctx) {
  const s = c.s
  const was = s.maintenance
  clearExhausted(c, 'maintenance off')
  s.maintenance = null
  log(c, 'info', 'maintenance off', { was: was?.reason ?? null })
  audit(c, 'maintenance_off', was?.reason ?? 'none', { since: was?.since ?? null })
  afterMaintenanceChange(c, 'maintenance off')
}

export function onStopRequested (c: Ctx) {
  const s = c.s
  clearExhausted(c, 'stop')
  cancelPendingRetry(c, 'the VM is being stopped')
  const previous = standing(s.maintenance)
  s.maintenance = { reason: 'stopped', until: null, since: c.now, note: null, previous }
  log(c, 'info', 'VM stopped by a technician; no reverts until it is started', {})
  audit(c, 'vm_stop', 'technician', {})
  c.actions.push({ type: 'destroy', reason: 'technician stop' })
}

export function onStartRequested (c: Ctx) {
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

export function onReset (c: Ctx) {
  if (c.s.exhausted === null) {
    log(c, 'info', 'reset: nothing to reset (not exhausted)', {})
    return
  }
  clearExhausted(c, 'reset')
  afterMaintenanceChange(c, 'reset')
}

export function onSchedule (c: Ctx, open: boolean) {
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
