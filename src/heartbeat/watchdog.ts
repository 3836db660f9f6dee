// The watchdog runtime of one VM: turns heartbeats, libvirt events, API calls and time into
// machine events, and carries out the machine's actions. It owns:
//   - ONE timer, armed at nextDeadline(state) after every step (never setInterval with async work);
//   - a slow safety-net poll of the VM state (self-rescheduling, never overlapping itself);
//   - the per-VM action queue (runExclusive): every libvirt action on this VM, whoever asks for
//     it (automatic revert, API revert, snapshot create, start/stop), runs through it, one at a time.
import { EventEmitter } from 'node:events'
import type { VmConfig } from '../config/schema.ts'
import { AppError } from '../errors.ts'
import { LibvirtError, type ConnectionEvent, type Hypervisor, type LifecycleEvent } from '../libvirt/index.ts'
import {
  initialState, nextDeadline, publicState, recentRevertCount, step, toPersisted,
  type Action, type LastRevert, type MachineEvent, type MachineSettings, type MaintenanceReason, type Phase,
  type PublicState, type RequestResult, type RequestSource, type RevertSource, type StepResult, type WatchdogState
} from './machine.ts'
import { parsePersistedState, type Counters, type PersistedWatchdogState } from './persisted.ts'

export interface Clock { now (): number }

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

/** pino's Logger fits; only these four levels are used. */
export interface WatchdogLogger {
  debug (obj: object, msg: string): void
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export interface WatchdogOptions {
  vm: VmConfig
  hypervisor: Hypervisor
  /** A child logger with the VM's name bound. */
  log: WatchdogLogger
  clock?: Clock
  persistence: WatchdogPersistence
  audit: WatchdogAudit
  /** Seconds between guest-caused reverts (default 60). */
  guestRevertMinInterval?: number
  /** After a graceful shutdown at closing time, destroy the VM if it still runs after this long (default 60 s). */
  shutdownTimeoutMs?: number
  /** The snapshot a revert goes to (default: vm.snapshot_name); snapshot/ may resolve revisions here. */
  resolveSnapshot?: () => string | Promise<string>
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

const REVERT_SOURCES_ALLOWED: readonly RequestSource[] = ['guest', 'technician', 'schedule', 'screen']
/** setTimeout overflows past 2^31-1 ms; a far deadline is approached in steps. */
const MAX_TIMER_MS = 24 * 3600 * 1000

export class Watchdog extends EventEmitter<WatchdogEvents> {
  readonly name: string
  readonly vm: VmConfig
  readonly #h: Hypervisor
  readonly #log: WatchdogLogger
  readonly #clock: Clock
  readonly #persistence: WatchdogPersistence
  readonly #audit: WatchdogAudit
  readonly #settings: MachineSettings
  readonly #shutdownTimeoutMs: number
  readonly #resolveSnapshot: () => string | Promise<string>

  #state: WatchdogState | null = null
  #started = false
  #closed = false
  #timer: NodeJS.Timeout | null = null
  #timerAt: number | null = null
  #pollTimer: NodeJS.Timeout | null = null
  #shutdownTimer: NodeJS.Timeout | null = null
  #unsubscribe: Array<() => void> = []
  #queue: Promise<unknown> = Promise.resolve()
  #action: string | null = null
  /** Bumped when an action starts or ends: a state read that straddles one is stale. */
  #actionGen = 0
  /** A lifecycle event came while an action ran: read the state again once the queue is free. */
  #recheck = false
  #pending = new Set<Promise<unknown>>()
  #saveChain: Promise<void> = Promise.resolve()
  #lastSource: string | null = null
  #libvirtConnected = false

  constructor (options: WatchdogOptions) {
    super()
    this.vm = options.vm
    this.name = options.vm.name
    this.#h = options.hypervisor
    this.#log = options.log
    this.#clock = options.clock ?? { now: Date.now }
    this.#persistence = options.persistence
    this.#audit = options.audit
    this.#settings = { ...options.vm, guest_revert_min_interval: options.guestRevertMinInterval ?? 60 }
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs ?? 60_000
    this.#resolveSnapshot = options.resolveSnapshot ?? (() => options.vm.snapshot_name)
  }

  /**
   * Observers (metrics, the live stream, alerts) listen from timer and request paths: one that
   * throws must not crash the service or stop the watchdog, so its error is logged and swallowed.
   */
  override emit<K extends keyof WatchdogEvents> (event: K, ...args: WatchdogEvents[K]): boolean {
    try {
      return (super.emit as (event: K, ...args: WatchdogEvents[K]) => boolean)(event, ...args)
    } catch (err) {
      this.#log.error({ err, event }, 'a listener of the watchdog failed; the watchdog goes on')
      return true
    }
  }

  /** Loads the persisted state, subscribes to libvirt events for this VM, reads its state once, arms the timer. */
  async start (): Promise<void> {
    if (this.#started) throw new Error(`watchdog of VM "${this.name}" was already started`)
    this.#started = true
    let persisted: PersistedWatchdogState | null = null
    try {
      const raw = await this.#persistence.load()
      if (raw !== null && raw !== undefined) persisted = parsePersistedState(raw)
    } catch (err) {
      this.#log.error({ err }, 'cannot use the saved watchdog state; starting without it')
    }
    const now = this.#clock.now()
    this.#state = initialState(persisted, now, this.#settings)
    const restored = toPersisted(this.#state)
    if (persisted === null || JSON.stringify(restored) !== JSON.stringify(persisted)) this.#save()
    this.#log.info({
      state: publicState(this.#state, now),
      maintenance: this.#state.maintenance?.reason ?? null,
      exhausted: this.#state.exhausted !== null,
      timeout: this.vm.heartbeat_timeout,
      firstDeadline: nextDeadline(this.#state)
    }, 'watchdog started')

    this.#unsubscribe.push(this.#h.onLifecycle((e) => this.#onLifecycle(e)))
    this.#unsubscribe.push(this.#h.onConnection((e) => this.#onConnection(e)))
    this.#libvirtConnected = this.#h.connected
    await this.#readVmState('start')
    this.#arm()
    this.#schedulePoll()
    this.emit('change', this.view())
  }

  /** Clears every timer, unsubscribes, waits for the action in flight and the last save. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const timer of [this.#timer, this.#pollTimer, this.#shutdownTimer]) if (timer) clearTimeout(timer)
    this.#timer = this.#pollTimer = this.#shutdownTimer = null
    for (const off of this.#unsubscribe.splice(0)) off()
    await this.#queue.catch(() => {})
    await Promise.allSettled([...this.#pending])
    await this.#saveChain
  }

  // -------------------------------------------------------------------------------------------
  // Commands

  heartbeat (input: HeartbeatInput = {}): void {
    this.#ready()
    if (this.#closed) return
    const seq = typeof input.seq === 'number' && Number.isSafeInteger(input.seq) && input.seq >= 0 ? input.seq : undefined
    const status = typeof input.status === 'string' ? input.status.slice(0, 200) : undefined
    if (typeof input.source === 'string') this.#lastSource = input.source
    this.#feed({ type: 'heartbeat', seq, status })
    const at = this.#state!.lastHeartbeatAt!
    if (this.listenerCount('heartbeat') > 0) {
      this.emit('heartbeat', { vm: this.name, at, seq: seq ?? null, status: status ?? null, source: this.#lastSource })
    }
  }

  /** A revert asked for by the guest, a technician or the schedule; the answer comes at once, the revert runs in the background. */
  requestRevert (reason: string, source: RequestSource): RequestResult {
    this.#ready()
    if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 200) {
      throw new AppError('BAD_REQUEST', 'a revert needs a reason: 1 to 200 characters')
    }
    if (!REVERT_SOURCES_ALLOWED.includes(source)) throw new AppError('BAD_REQUEST', `revert source must be one of ${REVERT_SOURCES_ALLOWED.join(', ')}`)
    if (this.#closed) return { outcome: 'refused', why: 'the service is shutting down' }
    return this.#feed({ type: 'revert_requested', reason: reason.trim(), source })?.result.outcome ?? { outcome: 'refused', why: 'the service is shutting down' }
  }

  /** Stops the VM on purpose (maintenance 'stopped' + destroy). Resolves once the destroy ran; never rejects (failures are logged). */
  stopVm (): Promise<void> {
    this.#ready()
    return this.#feed({ type: 'stop_requested' })?.done ?? Promise.resolve()
  }

  /** Clears a manual stop (or closed hours) and reverts (reason technician_start). */
  startVm (): RequestResult {
    this.#ready()
    return this.#feed({ type: 'start_requested' })?.result.outcome ?? { outcome: 'refused', why: 'the service is shutting down' }
  }

  /**
   * Maintenance: no automatic or guest reverts. `minutes` null = until cleared. reason 'config'
   * is EVC's /revert/disable (auto revert off); 'technician' a technician at work.
   */
  setMaintenance (minutes: number | null, reason: 'technician' | 'config' = 'technician', note?: string): void {
    this.#ready()
    if (minutes !== null && (typeof minutes !== 'number' || !Number.isFinite(minutes) || minutes <= 0 || minutes > 366 * 24 * 60)) {
      throw new AppError('BAD_REQUEST', `maintenance minutes must be a number above 0 and at most a year (got ${String(minutes)}), or null for no expiry`)
    }
    if (reason !== 'technician' && reason !== 'config') throw new AppError('BAD_REQUEST', 'maintenance reason must be technician or config')
    const until = minutes === null ? null : this.#clock.now() + Math.round(minutes * 60_000)
    this.#feed({ type: 'maintenance_on', until, reason, note: typeof note === 'string' ? note.slice(0, 500) : null })
  }

  clearMaintenance (): void {
    this.#ready()
    this.#feed({ type: 'maintenance_off' })
  }

  /** Clears 'exhausted' (a technician fixed the cause). */
  reset (): void {
    this.#ready()
    this.#feed({ type: 'reset' })
  }

  /** Opening hours: false = closed (maintenance + graceful shutdown), true = open (revert, if it was closed). */
  schedule (open: boolean): void {
    this.#ready()
    this.#feed({ type: 'schedule', open: open === true })
  }

  /** Runs `fn` in this VM's action queue: never two libvirt actions on the VM at once. */
  runExclusive<T> (label: string, fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      this.#action = label
      this.#actionGen++
      try {
        return await fn()
      } finally {
        this.#action = null
        this.#actionGen++
        if (this.#recheck && !this.#closed) {
          this.#recheck = false
          this.#readVmState('lifecycle event during an action').catch(() => {})
        }
      }
    })
    this.#queue = run.catch(() => {})
    return run
  }

  view (): WatchdogView {
    this.#ready()
    const s = this.#state!
    const now = this.#clock.now()
    return {
      vm: this.name,
      state: publicState(s, now),
      phase: s.phase,
      maintenance: s.maintenance === null ? null : { reason: s.maintenance.reason, until: s.maintenance.until, since: s.maintenance.since, note: s.maintenance.note },
      autoRevertEnabled: s.maintenance === null,
      exhausted: s.exhausted,
      escalated: s.escalated,
      lastHeartbeat: s.lastHeartbeatAt,
      lastSeq: s.lastSeq,
      lastStatus: s.lastStatus,
      lastSource: this.#lastSource,
      secondsSinceLast: s.lastHeartbeatAt === null ? null : Math.max(0, now - s.lastHeartbeatAt) / 1000,
      heartbeatsTotal: s.heartbeatsTotal,
      timeout: this.vm.heartbeat_timeout,
      recentReverts: recentRevertCount(s, now, this.#settings),
      maxReverts: this.vm.max_reverts,
      lastRevert: s.lastRevert,
      nextDeadline: nextDeadline(s),
      revertInFlight: s.revert?.inFlight ?? false,
      revert: s.revert === null ? null : { reason: s.revert.reason, source: s.revert.source, attempt: s.revert.attempt, startedAt: s.revert.startedAt, retryAt: s.revert.retryAt, lastError: s.revert.lastError },
      retryAt: s.revert?.retryAt ?? null,
      vmRunning: s.vmRunning,
      vmReason: s.vmReason,
      libvirtConnected: this.#libvirtConnected,
      action: this.#action,
      counters: s.counters
    }
  }

  /** The machine's state (read-only; for tests and diagnostics). */
  get machineState (): Readonly<WatchdogState> | null {
    return this.#state
  }

  // -------------------------------------------------------------------------------------------
  // The loop: event -> step -> actions -> timer

  #ready (): void {
    if (this.#state === null) throw new AppError('NOT_READY', `the watchdog of VM "${this.name}" has not started yet`)
  }

  #feed (event: MachineEvent): { result: StepResult, done: Promise<void> } | null {
    const before = this.#state
    if (before === null) return null
    const now = this.#clock.now()
    let result: StepResult
    try {
      result = step(before, event, now, this.#settings)
    } catch (err) {
      this.#log.error({ err, event: event.type }, 'watchdog state machine failed on an event; state unchanged')
      return null
    }
    this.#state = result.state
    const done: Promise<void>[] = []
    for (const action of result.actions) {
      const p = this.#execute(action, now)
      if (p) done.push(p)
    }
    this.#arm()
    if (result.actions.length > 0 || publicState(before, now) !== publicState(result.state, now)) {
      if (this.listenerCount('change') > 0) this.emit('change', this.view())
    }
    return { result, done: Promise.all(done).then(() => {}) }
  }

  #arm (): void {
    const deadline = this.#closed || this.#state === null ? null : nextDeadline(this.#state)
    if (deadline === this.#timerAt && (this.#timer !== null || deadline === null)) return
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = deadline
    if (deadline === null) return
    const delay = Math.min(Math.max(0, deadline - this.#clock.now()), MAX_TIMER_MS)
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAt = null
      this.#feed({ type: 'tick' })
      this.#arm() // also when the tick came early (timers may fire ~1 ms before Date.now() agrees)
    }, delay)
    this.#timer.unref()
  }

  #execute (action: Action, now: number): Promise<void> | null {
    switch (action.type) {
      case 'log':
        this.#log[action.level](action.fields, action.msg)
        return null
      case 'audit':
        return this.#track(this.#audit.append({ vm: this.name, ts: new Date(now).toISOString(), ...action.entry }).catch((err: unknown) => {
          this.#log.error({ err, kind: action.entry.kind }, 'cannot write the audit trail')
        }))
      case 'alert':
        this.emit('alert', { vm: this.name, kind: action.kind, reason: action.reason, fields: action.fields })
        return null
      case 'persist':
        this.#save()
        return null
      case 'revert':
        if (this.#closed) return null
        return this.#track(this.runExclusive(`revert:${action.reason}`, () => this.#revert(action)).catch((err: unknown) => {
          this.#log.error({ err }, 'revert action failed unexpectedly')
        }))
      case 'destroy':
        if (this.#closed) return null
        return this.#track(this.runExclusive('destroy', () => this.#destroy(action.reason)))
      case 'shutdown':
        if (this.#closed) return null
        return this.#track(this.runExclusive('shutdown', () => this.#shutdown(action.reason)))
    }
  }

  #track (p: Promise<unknown>): Promise<void> {
    const q = p.then(() => {}, () => {})
    this.#pending.add(q)
    q.finally(() => this.#pending.delete(q)).catch(() => {})
    return q
  }

  #save (): void {
    if (this.#state === null) return
    const doc = toPersisted(this.#state)
    this.#saveChain = this.#saveChain.then(() => this.#persistence.save(doc)).catch((err: unknown) => {
      this.#log.error({ err }, 'cannot save the watchdog state')
    })
  }

  // -------------------------------------------------------------------------------------------
  // libvirt actions (always inside runExclusive)

  async #revert (action: Extract<Action, { type: 'revert' }>): Promise<void> {
    const base = { vm: this.name, reason: action.reason, source: action.source, escalate: action.escalate, attempt: action.attempt }
    let snapshot = this.vm.snapshot_name
    let callAt = this.#clock.now()
    let deadlineLagMs: number | null = null
    try {
      if (action.escalate) {
        try {
          await this.#h.destroy(this.name)
        } catch (err) {
          if (!isNotRunning(err)) this.#log.warn({ err }, 'escalated revert: destroy failed; reverting anyway')
        }
      }
      snapshot = await this.#resolveSnapshot()
      callAt = this.#clock.now()
      deadlineLagMs = action.dueAt === null ? null : callAt - action.dueAt
      this.emit('revert', { ...base, phase: 'start', deadlineLagMs })
      await this.#h.revertToSnapshot(this.name, snapshot)
    } catch (err) {
      const error = describeRevertError(err, this.name, snapshot, this.#h.uri)
      this.emit('revert', { ...base, phase: 'finish', deadlineLagMs, outcome: 'failed', error })
      this.#feed({ type: 'revert_failed', error })
      return
    }
    const durationMs = this.#clock.now() - callAt
    this.emit('revert', { ...base, phase: 'finish', deadlineLagMs, outcome: 'succeeded', durationMs })
    this.#feed({ type: 'revert_finished', durationMs, deadlineLagMs })
  }

  async #destroy (reason: string): Promise<void> {
    try {
      await this.#h.destroy(this.name)
      this.#log.info({ reason }, 'VM destroyed')
    } catch (err) {
      if (isNotRunning(err)) return
      this.#log.error({ err, reason }, 'cannot stop the VM')
    }
  }

  async #shutdown (reason: string): Promise<void> {
    try {
      await this.#h.shutdown(this.name)
      this.#log.info({ reason, timeoutMs: this.#shutdownTimeoutMs }, 'VM shutdown requested')
    } catch (err) {
      if (isNotRunning(err)) return
      this.#log.error({ err, reason }, 'cannot shut the VM down')
    }
    if (this.#shutdownTimer) clearTimeout(this.#shutdownTimer)
    this.#shutdownTimer = setTimeout(() => {
      this.#shutdownTimer = null
      if (this.#closed || this.#state?.maintenance?.reason !== 'closed') return
      this.#track(this.runExclusive('destroy after shutdown timeout', async () => {
        const st = await this.#h.domainState(this.name)
        if (st.state === 'shutoff' || st.state === 'crashed') return
        this.#log.warn({ state: st.state, timeoutMs: this.#shutdownTimeoutMs }, 'the VM did not shut down in time; destroying it')
        await this.#destroy('shutdown timeout')
      }).catch((err: unknown) => this.#log.error({ err }, 'cannot check or stop the VM after the shutdown timeout')))
    }, this.#shutdownTimeoutMs)
    this.#shutdownTimer.unref()
  }

  // -------------------------------------------------------------------------------------------
  // What libvirt tells us

  #onLifecycle (e: LifecycleEvent): void {
    if (e.domain !== this.name || this.#closed) return
    this.#log.debug({ type: e.type, detail: e.detailName }, 'libvirt lifecycle event')
    if (e.detailName === 'from_snapshot') return // part of a revert
    if (e.type !== 'stopped' && e.type !== 'crashed' && e.type !== 'shutdown' && e.type !== 'started' && e.type !== 'undefined') return
    // The event says something changed; what the VM is now is read, not inferred (events may
    // arrive after the action that caused them has finished).
    if (this.#action !== null) {
      this.#recheck = true
      return
    }
    this.#readVmState(`lifecycle ${e.type}/${e.detailName}`).catch(() => {})
  }

  #onConnection (e: ConnectionEvent): void {
    if (this.#closed) return
    if (e.type === 'disconnected') {
      this.#libvirtConnected = false
      // libvirt being down is not the guest's fault: no revert because of it.
      this.#log.warn({ reason: e.reason }, 'libvirt connection lost; watching heartbeats only until it is back')
    } else {
      this.#libvirtConnected = true
      this.#log.info({}, 'libvirt connection back; reading the VM state')
      this.#feed({ type: 'retry_now', why: 'libvirt connection back' })
      this.#readVmState('reconnected').catch(() => {})
    }
    if (this.listenerCount('change') > 0 && this.#state !== null) this.emit('change', this.view())
  }

  async #readVmState (why: string): Promise<void> {
    if (this.#closed || this.#state === null || !this.#h.connected) return
    if (this.#action !== null) {
      this.#recheck = true
      return
    }
    const gen = this.#actionGen
    let event: MachineEvent | null = null
    try {
      const st = await this.#h.domainState(this.name)
      if (st.state === 'nostate') return
      const running = st.state !== 'shutoff' && st.state !== 'crashed'
      event = { type: 'vm_state', running, reason: `${st.state}/${st.reasonName}` }
    } catch (err) {
      if (err instanceof LibvirtError && err.isNoDomain) {
        event = { type: 'vm_state', running: false, reason: `domain "${this.name}" is not defined in libvirt` }
      } else if (err instanceof LibvirtError && err.isDisconnected) {
        return
      } else {
        this.#log.warn({ err, why }, 'cannot read the VM state')
        return
      }
    }
    // A read that straddled an action says what was, not what is.
    if (this.#closed || gen !== this.#actionGen || this.#action !== null) return
    this.#feed(event)
  }

  #schedulePoll (): void {
    if (this.#closed) return
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = null
      this.#readVmState('poll').finally(() => this.#schedulePoll())
    }, Math.max(50, Math.round(this.vm.heartbeat_check_interval * 1000)))
    this.#pollTimer.unref()
  }
}

function isNotRunning (err: unknown): boolean {
  return err instanceof LibvirtError && err.codeName === 'VIR_ERR_OPERATION_INVALID'
}

function describeRevertError (err: unknown, vm: string, snapshot: string, uri: string): string {
  if (err instanceof LibvirtError) {
    if (err.isNoSnapshot) return `snapshot "${snapshot}" of VM "${vm}" does not exist: create it (POST /api/v1/snapshot/create) while the exhibit is in its ready state`
    if (err.isNoDomain) return `VM "${vm}" is not defined in libvirt (${uri})`
    if (err.isDisconnected) return `libvirt is not reachable (${uri}): ${err.message}`
    return `libvirt refused the revert (${err.codeName}): ${err.message}`
  }
  return `revert failed: ${err instanceof Error ? err.message : String(err)}`
}
