// The read-only view of one watchdog: what /status, /vms, the live stream and metrics show.
import { detectorView, nextDeadline, publicState, recentRevertCount, type MachineSettings, type WatchdogState } from './machine.ts'
import type { WatchdogView } from './watchdog-types.ts'

/** What the runtime knows beside the machine's state. */
export interface RuntimeFacts {
  vm: string
  timeout: number
  maxReverts: number
  lastSource: string | null
  libvirtConnected: boolean
  action: string | null
}

export function buildView (s: WatchdogState, now: number, settings: MachineSettings, facts: RuntimeFacts): WatchdogView {
  return {
    vm: facts.vm,
    state: publicState(s, now),
    phase: s.phase,
    maintenance: s.maintenance === null ? null : { reason: s.maintenance.reason, until: s.maintenance.until, since: s.maintenance.since, note: s.maintenance.note },
    autoRevertEnabled: s.maintenance === null,
    exhausted: s.exhausted,
    escalated: s.escalated,
    lastHeartbeat: s.lastHeartbeatAt,
    lastSeq: s.lastSeq,
    lastStatus: s.lastStatus,
    lastSource: facts.lastSource,
    secondsSinceLast: s.lastHeartbeatAt === null ? null : Math.max(0, now - s.lastHeartbeatAt) / 1000,
    heartbeatsTotal: s.heartbeatsTotal,
    timeout: facts.timeout,
    recentReverts: recentRevertCount(s, now, settings),
    maxReverts: facts.maxReverts,
    lastRevert: s.lastRevert,
    nextDeadline: nextDeadline(s),
    detector: detectorView(s, now, settings),
    revertInFlight: s.revert?.inFlight ?? false,
    revert: s.revert === null ? null : { reason: s.revert.reason, source: s.revert.source, attempt: s.revert.attempt, startedAt: s.revert.startedAt, retryAt: s.revert.retryAt, lastError: s.revert.lastError },
    retryAt: s.revert?.retryAt ?? null,
    vmRunning: s.vmRunning,
    vmReason: s.vmReason,
    libvirtConnected: facts.libvirtConnected,
    action: facts.action,
    counters: s.counters
  }
}
