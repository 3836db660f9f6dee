// The STATUS= line `systemctl status kiosk-vm-watchdog` shows, kept true: rebuilt on every change
// a technician cares about (libvirt lost or back, a VM's state, maintenance, exhausted) and sent
// only when its text changes, so a steady stream of heartbeats sends nothing.
import type { TimerPort } from '../ports/index.ts'
import type { Notifier } from './notify.ts'

/** The part of a watchdog's view the status line uses (WatchdogView fits). */
export interface StatusView {
  vm: string
  state: string
  maintenance: { reason: string, until: number | null } | null
  exhausted: { reason: string } | null
  vmRunning: boolean | null
}

export interface StatusFacts {
  /** e.g. "listening on 0.0.0.0:8000" */
  listening: string
  uri: string
  connected: boolean
  /** libvirt was reached at least once since the start (else: still waiting for it). */
  everConnected: boolean
  views: readonly StatusView[]
}

function vmPart (v: StatusView): string {
  if (v.exhausted !== null) return `${v.vm}: EXHAUSTED, reverts stopped (${v.exhausted.reason}); POST /api/v1/reset after fixing`
  if (v.maintenance !== null) {
    const until = v.maintenance.until === null ? '' : ` until ${new Date(v.maintenance.until).toISOString().slice(0, 16).replace('T', ' ')} UTC`
    return `${v.vm}: maintenance (${v.maintenance.reason})${until}`
  }
  const vm = v.vmRunning === null ? '' : v.vmRunning ? ', VM running' : ', VM not running'
  return `${v.vm}: ${v.state}${vm}`
}

/** One line: where the API listens, libvirt, then each VM. */
export function statusLine (f: StatusFacts): string {
  const libvirt = f.connected
    ? `libvirt ${f.uri} connected`
    : f.everConnected
      ? `libvirt ${f.uri} LOST, reconnecting (no reverts until it is back)`
      : `waiting for libvirt at ${f.uri} (no reverts until it answers)`
  const vms = f.views.map(vmPart).join('; ')
  return `${f.listening}; ${libvirt}; ${vms === '' ? 'no VM watched' : vms}`
}

export interface StatusUpdater {
  /** READY=1 together with the first STATUS= line (one datagram). */
  ready (): void
  /** STATUS= again, when the line differs from the last one sent. */
  update (): void
  /**
   * update() once, STATUS_COALESCE_MS later: a burst of changes (every VM's first heartbeat after a
   * start, all VMs after libvirt is back) builds the line, which walks every VM, a few times a
   * second at most instead of once per change (N VMs: N² view builds).
   */
  updateSoon (): void
  /** Drops a pending updateSoon(). */
  close (): void
}

/** How long updateSoon() gathers changes; `systemctl status` a quarter second late is no loss. */
export const STATUS_COALESCE_MS = 250

export function statusUpdater (notifier: Pick<Notifier, 'status' | 'ready'>, line: () => string, timers?: TimerPort): StatusUpdater {
  let last: string | null = null
  let pending: unknown = null
  const current = (): string | null => {
    try {
      return line()
    } catch {
      return null // a view that cannot be built now (closing) is not worth a crash
    }
  }
  return {
    ready () {
      last = current()
      if (last === null) notifier.ready()
      else notifier.ready(last)
    },
    update () {
      const text = current()
      if (text === null || text === last) return
      last = text
      notifier.status(text)
    },
    updateSoon () {
      if (timers === undefined) return this.update()
      if (pending !== null) return
      pending = timers.setTimeout(() => {
        pending = null
        this.update()
      }, STATUS_COALESCE_MS)
    },
    close () {
      if (pending !== null) timers?.clearTimeout(pending)
      pending = null
    }
  }
}
