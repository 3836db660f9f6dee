// The machine's entry points: step (one event), initialState (at service start), toPersisted
// (the subset that survives a restart).
import { heartbeatDeadlines } from './deadlines.ts'
import { emptyWindow, restoreWindow, saveWindow, type GapWindow } from './detector.ts'
import {
  onHeartbeat, onMaintenanceOff, onMaintenanceOn, onReset, onRetryNow, onRevertFailed, onRevertFinished,
  onRevertRequested, onSchedule, onStartRequested, onStopRequested, onTick, onVmState, onVmStateKnown
} from './events.ts'
import { standing, type Ctx } from './rules.ts'
import { timing } from './settings.ts'
import type {
  LogLevel, MachineEvent, MachineSettings, Maintenance, PersistedWatchdogState, StepResult, WatchdogState
} from './types.ts'
import { reportedState } from './views.ts'
import { emptyCounters } from '../persisted.ts'

export function step (state: WatchdogState, event: MachineEvent, now: number, settings: MachineSettings): StepResult {
  // The hot path (a heartbeat while healthy: nothing but the record changes) skips the deep copy.
  if (event.type === 'heartbeat' && state.phase === 'healthy' && state.revert === null) {
    const next = heartbeatDeadlines(state, now, timing(settings))
    return {
      state: {
        ...state,
        lastHeartbeatAt: now,
        lateAt: next.lateAt,
        timeoutAt: next.timeoutAt,
        gapWindow: next.gapWindow,
        lastSeq: typeof event.seq === 'number' && Number.isFinite(event.seq) ? event.seq : null,
        lastStatus: typeof event.status === 'string' ? event.status : null,
        heartbeatsTotal: state.heartbeatsTotal + 1
      },
      actions: startedEpoch(state.gapWindow, next.gapWindow) ? [{ type: 'persist' }] : []
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
    case 'vm_state_known': onVmStateKnown(c); break
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
  if (JSON.stringify(persistedFields(state)) !== JSON.stringify(persistedFields(c.s)) || startedEpoch(state.gapWindow, c.s.gapWindow)) {
    c.actions.push({ type: 'persist' })
  }
  const result: StepResult = { state: c.s, actions: c.actions }
  if (c.outcome !== undefined) result.outcome = c.outcome
  return result
}

/**
 * A new epoch of the gap window began (about once an hour at one beat a second): the moment to
 * save it. Not per heartbeat: a crash loses at most the epoch being filled.
 */
function startedEpoch (before: GapWindow, after: GapWindow): boolean {
  return after.filling === 1 && after.learnedMs !== before.learnedMs
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
    gapWindow: persisted?.gapWindow === undefined ? emptyWindow() : restoreWindow(persisted.gapWindow).window,
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

/** What survives a restart, without the gap window (which changes with every beat and is saved per epoch). */
function persistedFields (s: WatchdogState): Omit<PersistedWatchdogState, 'gapWindow'> {
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

export function toPersisted (s: WatchdogState): PersistedWatchdogState {
  const fields: PersistedWatchdogState = persistedFields(s)
  if (s.gapWindow.samples > 0) fields.gapWindow = saveWindow(s.gapWindow)
  return fields
}
