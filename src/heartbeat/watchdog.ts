// The watchdog runtime of one VM: turns heartbeats, libvirt events, API calls and time into
// machine events, and carries out the machine's actions. It owns:
//   - ONE timer, armed at nextDeadline(state) after every step (never setInterval with async work);
//   - a slow safety-net poll of the VM state (self-rescheduling, never overlapping itself);
//   - the per-VM action queue (action-queue.ts).
// Types are in watchdog-types.ts, the view in view.ts, the libvirt actions in vm-actions.ts.
import { EventEmitter } from 'node:events'
import type { VmConfig } from '../config/schema.ts'
import { AppError } from '../errors.ts'
import type { ConnectionEvent, Hypervisor, LifecycleEvent } from '../libvirt/index.ts'
import { MAINTENANCE_MAX_MINUTES } from '../limits.ts'
import { MAX_TIMER_MS, type Clock, type Log, type TimerPort } from '../ports/index.ts'
import { ActionQueue } from './action-queue.ts'
import {
  initialState, nextDeadline, publicState, restoreWindow, step, toPersisted,
  type Action, type MachineEvent, type MachineSettings, type RequestResult, type RequestSource, type StepResult, type WatchdogState
} from './machine.ts'
import { parsePersistedState, type PersistedWatchdogState } from './persisted.ts'
import { buildView } from './view.ts'
import { destroyIfStillRunning, destroyVm, readVmState, revertVm, shutdownVm, type VmActionContext } from './vm-actions.ts'
import type {
  HeartbeatInput, WatchdogAudit, WatchdogEvents, WatchdogOptions, WatchdogPersistence, WatchdogView
} from './watchdog-types.ts'

export type * from './watchdog-types.ts'

/** What feeding one event to the machine started. */
interface Fed { result: StepResult, done: Promise<void>, audited: Promise<void> }

const REVERT_SOURCES_ALLOWED: readonly RequestSource[] = ['guest', 'technician', 'schedule', 'screen']

export class Watchdog extends EventEmitter<WatchdogEvents> {
  readonly name: string
  readonly vm: VmConfig
  readonly #h: Hypervisor
  readonly #log: Log
  readonly #clock: Clock
  readonly #timers: TimerPort
  readonly #persistence: WatchdogPersistence
  readonly #audit: WatchdogAudit
  readonly #settings: MachineSettings
  readonly #shutdownTimeoutMs: number
  readonly #actions: VmActionContext
  readonly #queue: ActionQueue

  #state: WatchdogState | null = null
  #started = false
  #closed = false
  #timer: unknown = null
  #timerAt: number | null = null
  #pollTimer: unknown = null
  #shutdownTimer: unknown = null
  #unsubscribe: Array<() => void> = []
  /** A lifecycle event came while an action ran: read the state again once the queue is free. */
  #recheck = false
  #pending = new Set<Promise<unknown>>()
  #saveChain: Promise<void> = Promise.resolve()
  #lastSource: string | null = null
  #libvirtConnected = false
  /** No machine timer runs before libvirt answered and the VM state was read once (no grace runs down, no revert). */
  #vmStateKnown = false

  constructor (options: WatchdogOptions) {
    super()
    this.vm = options.vm
    this.name = options.vm.name
    this.#h = options.hypervisor
    this.#log = options.log
    this.#clock = options.clock
    this.#timers = options.timers
    this.#persistence = options.persistence
    this.#audit = options.audit
    this.#settings = { ...options.vm, guest_revert_min_interval: options.guestRevertMinInterval }
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs ?? 60_000
    this.#actions = {
      vm: this.name,
      snapshotName: options.vm.snapshot_name,
      hypervisor: options.hypervisor,
      log: options.log,
      clock: options.clock,
      resolveSnapshot: options.resolveSnapshot,
      onRevert: (event) => this.emit('revert', event)
    }
    this.#queue = new ActionQueue(() => {
      if (this.#recheck && !this.#closed) {
        this.#recheck = false
        this.#track(this.#readVmState('lifecycle event during an action'))
      }
    })
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
    const savedWindow = persisted?.gapWindow === undefined ? null : restoreWindow(persisted.gapWindow).problem
    if (savedWindow !== null) this.#log.warn({ problem: savedWindow }, 'the saved heartbeat gap window does not fit this version; the adaptive detector learns afresh')
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
    for (const timer of [this.#timer, this.#pollTimer, this.#shutdownTimer]) if (timer !== null) this.#timers.clearTimeout(timer)
    this.#timer = this.#pollTimer = this.#shutdownTimer = null
    for (const off of this.#unsubscribe.splice(0)) off()
    // The adaptive detector's gap window is saved once per epoch (an hour of beats); a clean stop
    // keeps the rest too.
    if (this.#state !== null && this.#state.gapWindow.samples > 0) this.#save().catch(() => {})
    await this.settled()
  }

  /**
   * Resolves once nothing started so far is still running: the action queue is empty, audit
   * appends and state saves are written. (Shutdown waits for it; tests on a fake clock too.)
   */
  async settled (): Promise<void> {
    for (;;) {
      await this.#queue.drain().catch(() => {})
      await Promise.allSettled([...this.#pending])
      const chain = this.#saveChain
      await chain
      if (this.#queue.current === null && this.#pending.size === 0 && chain === this.#saveChain) return
    }
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

  /**
   * Stops the VM on purpose (maintenance 'stopped' + destroy). The stop is saved first: when that
   * fails, nothing happens and it rejects with STATE_NOT_SAVED. Resolves once the destroy ran
   * (destroy failures are logged).
   */
  async stopVm (): Promise<void> {
    this.#ready()
    const fed = await this.#saveThenApply({ type: 'stop_requested' })
    await (fed?.done ?? Promise.resolve())
  }

  /** Clears a manual stop (or closed hours) and reverts (reason technician_start); saved first, as stopVm. */
  async startVm (): Promise<RequestResult> {
    this.#ready()
    const fed = await this.#saveThenApply({ type: 'start_requested' })
    return fed?.result.outcome ?? { outcome: 'refused', why: 'the service is shutting down' }
  }

  /**
   * Maintenance: no automatic or guest reverts. `minutes` null = until cleared. reason 'config'
   * is EVC's /revert/disable (auto revert off); 'technician' a technician at work.
   * Saved first, then applied: the promise resolves once both are done and the change is in the
   * audit trail (a failed audit write is logged, not thrown). When saving fails nothing
   * changes (the old setting stays in force and visible) and it rejects with STATE_NOT_SAVED (503).
   * Bad arguments throw at once.
   */
  setMaintenance (minutes: number | null, reason: 'technician' | 'config' = 'technician', note?: string): Promise<void> {
    this.#ready()
    if (minutes !== null && (typeof minutes !== 'number' || !Number.isFinite(minutes) || minutes <= 0 || minutes > MAINTENANCE_MAX_MINUTES)) {
      throw new AppError('BAD_REQUEST', `maintenance minutes must be a number above 0 and at most ${MAINTENANCE_MAX_MINUTES} (got ${String(minutes)}), or null for no expiry`)
    }
    if (reason !== 'technician' && reason !== 'config') throw new AppError('BAD_REQUEST', 'maintenance reason must be technician or config')
    const until = minutes === null ? null : this.#clock.now() + Math.round(minutes * 60_000)
    return this.#saveThenApply({ type: 'maintenance_on', until, reason, note: typeof note === 'string' ? note.slice(0, 500) : null }).then(this.#confirmed)
  }

  /** Ends maintenance; the promise works as setMaintenance's. */
  clearMaintenance (): Promise<void> {
    this.#ready()
    return this.#saveThenApply({ type: 'maintenance_off' }).then(this.#confirmed)
  }

  /** Clears 'exhausted' (a technician fixed the cause); the promise works as setMaintenance's. */
  reset (): Promise<void> {
    this.#ready()
    return this.#saveThenApply({ type: 'reset' }).then(this.#confirmed)
  }

  /** Opening hours: false = closed (maintenance + graceful shutdown), true = open (revert, if it was closed). */
  schedule (open: boolean): void {
    this.#ready()
    this.#feed({ type: 'schedule', open: open === true })
  }

  /** Runs `fn` in this VM's action queue: never two libvirt actions on the VM at once. */
  runExclusive<T> (label: string, fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(label, fn)
  }

  view (): WatchdogView {
    this.#ready()
    return buildView(this.#state!, this.#clock.now(), this.#settings, {
      vm: this.name,
      timeout: this.vm.heartbeat_timeout,
      maxReverts: this.vm.max_reverts,
      lastSource: this.#lastSource,
      libvirtConnected: this.#libvirtConnected,
      action: this.#queue.current
    })
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

  /** `done`: every action started has finished; `audited`: its audit entries are written (failures logged). */
  #feed (event: MachineEvent): Fed | null {
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
    const audited: Promise<void>[] = []
    for (const action of result.actions) {
      const p = this.#execute(action, now)
      if (p) done.push(p)
      if (p && action.type === 'audit') audited.push(p)
    }
    this.#arm()
    if (result.actions.length > 0 || publicState(before, now) !== publicState(result.state, now)) {
      if (this.listenerCount('change') > 0) this.emit('change', this.view())
    }
    return { result, done: Promise.all(done).then(() => {}), audited: Promise.all(audited).then(() => {}) }
  }

  #arm (): void {
    const deadline = this.#closed || this.#state === null || !this.#vmStateKnown ? null : nextDeadline(this.#state)
    if (deadline === this.#timerAt && (this.#timer !== null || deadline === null)) return
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = deadline
    if (deadline === null) return
    // A far deadline is approached in steps (setTimeout overflows past 2^31-1 ms).
    const delay = Math.min(Math.max(0, deadline - this.#clock.now()), MAX_TIMER_MS)
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null
      this.#timerAt = null
      this.#feed({ type: 'tick' })
      this.#arm() // also when the tick came early (timers may fire ~1 ms before Date.now() agrees)
    }, delay)
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
        this.#save().catch(() => {}) // logged by the chain
        return null
      case 'revert':
        if (this.#closed) return null
        return this.#track(this.runExclusive(`revert:${action.reason}`, async () => {
          this.#feed(await revertVm(this.#actions, action))
        }).catch((err: unknown) => {
          this.#log.error({ err }, 'revert action failed unexpectedly')
        }))
      case 'destroy':
        if (this.#closed) return null
        return this.#track(this.runExclusive('destroy', () => destroyVm(this.#actions, action.reason)))
      case 'shutdown':
        if (this.#closed) return null
        return this.#track(this.runExclusive('shutdown', async () => {
          await shutdownVm(this.#actions, action.reason, this.#shutdownTimeoutMs)
          this.#armShutdownTimeout()
        }))
    }
  }

  /** Closing time: a guest that ignores the shutdown request is destroyed after the timeout. */
  #armShutdownTimeout (): void {
    if (this.#closed) return // a shutdown that was under way when close() ran
    if (this.#shutdownTimer !== null) this.#timers.clearTimeout(this.#shutdownTimer)
    this.#shutdownTimer = this.#timers.setTimeout(() => {
      this.#shutdownTimer = null
      if (this.#closed || this.#state?.maintenance?.reason !== 'closed') return
      this.#track(this.runExclusive('destroy after shutdown timeout', () => destroyIfStillRunning(this.#actions, this.#shutdownTimeoutMs))
        .catch((err: unknown) => this.#log.error({ err }, 'cannot check or stop the VM after the shutdown timeout')))
    }, this.#shutdownTimeoutMs)
  }

  #track (p: Promise<unknown>): Promise<void> {
    const q = p.then(() => {}, () => {})
    this.#pending.add(q)
    q.finally(() => this.#pending.delete(q)).catch(() => {})
    return q
  }

  /**
   * Queues a save of the state as it is when the save runs (not as it was when queued: the file
   * gets the newest state). Returns that save's own outcome; the chain goes on.
   */
  #save (): Promise<void> {
    const run = this.#saveChain.then(() => {
      if (this.#state !== null) return this.#persistence.save(toPersisted(this.#state))
    })
    this.#saveChain = run.catch((err: unknown) => {
      this.#log.error({ err }, 'cannot save the watchdog state')
    })
    return run
  }

  /** Resolves once the change's audit entries are written; a change that was not made is no 2xx. */
  readonly #confirmed = async (fed: Fed | null): Promise<void> => {
    if (fed === null) throw new AppError('NOT_READY', `the watchdog of VM "${this.name}" is shutting down: the change was not made`)
    await fed.audited
  }

  /**
   * A technician's change (maintenance, reset, stop, start): saves what `event` makes of the
   * state, then applies it, both in one step of the save chain (no other save can come between,
   * so the file never loses the change once it held it). When the save fails nothing is applied:
   * the old setting stays in force and visible, and it rejects with STATE_NOT_SAVED.
   */
  async #saveThenApply (event: MachineEvent): Promise<Fed | null> {
    let saveError: unknown = null
    const run = this.#saveChain.then(async () => {
      if (this.#state === null) return null
      const trial = step(this.#state, event, this.#clock.now(), this.#settings)
      if (trial.actions.some((a) => a.type === 'persist')) {
        try {
          await this.#persistence.save(toPersisted(trial.state))
        } catch (err) {
          saveError = err
          return null
        }
      }
      return this.#feed(event)
    })
    this.#saveChain = run.then(() => {}, () => {})
    const fed = await run
    if (saveError !== null) {
      this.#log.error({ err: saveError, event: event.type }, 'cannot save a technician\'s change; it was not made')
      this.#track(this.#audit.append({ vm: this.name, ts: new Date(this.#clock.now()).toISOString(), kind: 'change_not_saved', reason: event.type, error: describeError(saveError) }).catch(() => {}))
      throw notSaved(event, saveError)
    }
    return fed
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
    if (this.#queue.current !== null) {
      this.#recheck = true
      return
    }
    this.#track(this.#readVmState(`lifecycle ${e.type}/${e.detailName}`))
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
      this.#track(this.#readVmState('reconnected'))
    }
    if (this.listenerCount('change') > 0 && this.#state !== null) this.emit('change', this.view())
  }

  async #readVmState (why: string): Promise<void> {
    if (this.#closed || this.#state === null || !this.#h.connected) return
    if (this.#queue.current !== null) {
      this.#recheck = true
      return
    }
    const generation = this.#queue.generation
    const event = await readVmState(this.#actions, why)
    // A read that straddled an action says what was, not what is.
    if (this.#closed || generation !== this.#queue.generation || this.#queue.current !== null) return
    if (event !== null) this.#feed(event)
    if (!this.#vmStateKnown && this.#h.connected) {
      this.#vmStateKnown = true
      this.#feed({ type: 'vm_state_known' })
    }
  }

  #schedulePoll (): void {
    if (this.#closed) return
    this.#pollTimer = this.#timers.setTimeout(() => {
      this.#pollTimer = null
      this.#track(this.#readVmState('poll').finally(() => this.#schedulePoll()))
    }, Math.min(Math.max(50, Math.round(this.vm.heartbeat_check_interval * 1000)), MAX_TIMER_MS))
  }
}

function describeError (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function notSaved (event: MachineEvent, err: unknown): AppError {
  return new AppError('STATE_NOT_SAVED', `the change (${event.type}) could not be saved, so it was not made: ${describeError(err)}`, { event: event.type }, { cause: err })
}
