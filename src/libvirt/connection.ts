// LibvirtHypervisor: the Hypervisor interface over libvirt.so.0.
//
// Threading: every call that can block (anything that may talk to libvirtd) runs on a libuv worker
// through koffi's `.async`; only pure accessors and frees (virDomainGetName, virDomainFree...) run
// on the event loop. Calls on one connection are serialized through a promise chain, so libvirt's
// per-connection last error is read right after the call that set it. libvirt's event loop
// (lifecycle events, keepalive, close detection) runs on its own worker in eventLoop below; its
// callbacks are queued by koffi to the JS thread, and we hop off them with setImmediate so the
// libvirt thread is never held up by our listeners.
import { EventEmitter } from 'node:events'
import { realTimers, silentLog, type Log, type TimerPort } from '../ports/index.ts'
import { callAsync, ffi, koffi, takePointerArray, type LibvirtFfi, type Pointer } from './ffi.ts'
import {
  ANSWERED_ERROR_CODES, CLOSE_REASONS, DOMAIN_STATE_NAMES, DOMAIN_STATE_REASONS, LIFECYCLE_DETAIL_NAMES,
  LIFECYCLE_EVENT_NAMES, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC,
  VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN, VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
} from './constants.ts'
import { LibvirtError, notConnected } from './errors.ts'
import { parseSnapshotXml } from './xml.ts'
import type {
  ConnectionEvent, DomainStateInfo, Hypervisor, LifecycleEvent, Screenshot, SnapshotInfo
} from './types.ts'

export interface HypervisorOptions {
  /** Keepalive interval in seconds; 0 disables. */
  keepaliveInterval?: number
  keepaliveCount?: number
  /** Reconnect on its own when the connection drops or the first connect fails. */
  reconnect?: boolean
  reconnectInitialMs?: number
  reconnectMaxMs?: number
  /**
   * While the daemon is not there at all (its socket missing or refusing: nothing answered), retry
   * at least this often, whatever the backoff has grown to: such an attempt costs one failed
   * connect(2), and libvirtd is used again within this long of coming back.
   */
  reconnectWhileDownMs?: number
  /** Timers for the reconnect backoff (default: real, unref'd). */
  timers?: TimerPort
  log?: HypervisorLog
}

/** virConnectOpen failed with no daemon to talk to: VIR_ERR_SYSTEM_ERROR from VIR_FROM_RPC (socket missing, refused). */
export function daemonAbsent (code: number, domain: number): boolean {
  return code === 38 && domain === 7
}

/**
 * The wait before the next reconnect attempt and the backoff after it: doubling up to maxMs after
 * failures where libvirt answered; while the daemon is absent, at most whileDownMs and the backoff
 * does not grow (a daemon that comes back but fails at first is retried soon, not after maxMs).
 */
export function reconnectDelay (backoffMs: number, absent: boolean, opts: { maxMs: number, whileDownMs: number }): { delayMs: number, nextBackoffMs: number } {
  if (absent) return { delayMs: Math.min(backoffMs, opts.whileDownMs), nextBackoffMs: backoffMs }
  return { delayMs: backoffMs, nextBackoffMs: Math.min(backoffMs * 2, opts.maxMs) }
}

type HypervisorLog = Pick<Log, 'debug' | 'info' | 'warn'>

// ---------------------------------------------------------------------------------------------
// Process-wide parts: the error handler and libvirt's event loop.

interface CapturedError { code: number, domain: number, message: string }
let lastGlobalError: CapturedError | null = null
let processSetupDone = false

function decodeError (lib: LibvirtFfi, ptr: Pointer): CapturedError | null {
  if (ptr === null || ptr === undefined) return null
  const e = koffi.decode(ptr, lib.types.virError) as { code: number, domain: number, message: string | null }
  if (e.code === 0) return null
  return { code: e.code, domain: e.domain, message: e.message ?? 'unknown libvirt error' }
}

/** Once per process: silence libvirt's stderr printing and register its default event loop. */
function setupProcess (lib: LibvirtFfi): void {
  if (processSetupDone) return
  // libvirt prints every error to stderr unless an error function is set; ours only remembers
  // the error, which we need for virConnectOpen (no connection to read the error from).
  const onError = koffi.register((_user: unknown, err: Pointer) => {
    lastGlobalError = decodeError(lib, err)
  }, koffi.pointer(lib.types.ErrorCallback))
  lib.virSetErrorFunc(null, onError)
  if ((lib.virEventRegisterDefaultImpl() as number) < 0) {
    throw new LibvirtError('virEventRegisterDefaultImpl', 1, 0, 'cannot register libvirt\'s event loop')
  }
  processSetupDone = true
}

/**
 * libvirt's default event loop, run on one libuv worker while any connection is open. Its
 * callbacks into JS need the main thread, so the loop must have stopped before the process
 * exits: process.exit joins the worker threads, and a worker waiting for the main thread would
 * never join. release() therefore resolves only once the last iteration has returned.
 */
const eventLoop = {
  refs: 0,
  running: false,
  wakeTimer: -1,
  wakeCallback: null as unknown,
  stopped: Promise.resolve(),
  markStopped: () => {},
  retain (lib: LibvirtFfi): void {
    this.refs++
    if (!this.running) {
      this.running = true
      this.stopped = new Promise((resolve) => { this.markStopped = resolve })
      this.iterate(lib)
    }
  },
  release (lib: LibvirtFfi): Promise<void> {
    this.refs--
    if (this.refs === 0 && this.running && this.wakeTimer < 0) {
      // virEventRunDefaultImpl blocks in poll(); a zero timeout makes it return so the loop can end.
      this.wakeCallback ??= koffi.register(() => {}, koffi.pointer(lib.types.TimeoutCallback))
      this.wakeTimer = lib.virEventAddTimeout(0, this.wakeCallback, null, null) as number
    }
    return this.refs === 0 ? this.stopped : Promise.resolve()
  },
  iterate (lib: LibvirtFfi): void {
    lib.virEventRunDefaultImpl.async((_err: Error | null) => {
      if (this.wakeTimer >= 0) {
        lib.virEventRemoveTimeout(this.wakeTimer)
        this.wakeTimer = -1
      }
      if (this.refs > 0) {
        this.iterate(lib)
      } else {
        this.running = false
        this.markStopped()
      }
    })
  }
}

// ---------------------------------------------------------------------------------------------

export class LibvirtHypervisor implements Hypervisor {
  readonly uri: string
  readonly #lib: LibvirtFfi
  readonly #opts: Required<Omit<HypervisorOptions, 'log' | 'timers'>>
  readonly #timers: TimerPort
  readonly #log: HypervisorLog
  readonly #events = new EventEmitter()
  #conn: Pointer | null = null
  #queue: Promise<unknown> = Promise.resolve()
  #lifecycleId = -1
  #lifecycleCb: unknown = null
  #closeCb: unknown = null
  #connecting: Promise<void> | null = null
  #reconnectTimer: unknown = null
  #reconnectDelay: number
  #retained = false
  #closed = false

  constructor (uri: string, options: HypervisorOptions = {}) {
    this.uri = uri
    this.#lib = ffi()
    this.#log = options.log ?? silentLog
    this.#opts = {
      keepaliveInterval: options.keepaliveInterval ?? 5,
      keepaliveCount: options.keepaliveCount ?? 3,
      reconnect: options.reconnect ?? true,
      reconnectInitialMs: options.reconnectInitialMs ?? 500,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
      reconnectWhileDownMs: options.reconnectWhileDownMs ?? 500
    }
    this.#timers = options.timers ?? realTimers
    this.#reconnectDelay = this.#opts.reconnectInitialMs
    this.#events.setMaxListeners(0)
    setupProcess(this.#lib)
  }

  get connected (): boolean { return this.#conn !== null }

  libraryVersion (): string {
    const lib = [0]
    const type = [0]
    this.#lib.virGetVersion(lib, null, type)
    const v = lib[0] ?? 0
    return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`
  }

  // -- connection ------------------------------------------------------------------------------

  async connect (): Promise<void> {
    if (this.#closed) throw new LibvirtError('virConnectOpen', 0, 0, 'the hypervisor connection was closed')
    if (this.#conn !== null) return
    this.#connecting ??= this.#open().finally(() => { this.#connecting = null })
    return this.#connecting
  }

  async #open (): Promise<void> {
    const lib = this.#lib
    if (!this.#retained) {
      eventLoop.retain(lib)
      this.#retained = true
    }
    lastGlobalError = null
    const conn = await callAsync<Pointer>(lib.virConnectOpen, this.uri)
    if (conn === null) {
      const e = lastGlobalError as CapturedError | null
      const error = new LibvirtError('virConnectOpen', e?.code ?? 5, e?.domain ?? 0, e?.message ?? `cannot connect to ${this.uri}`)
      this.#scheduleReconnect(error.message, daemonAbsent(error.code, error.libvirtDomain))
      throw error
    }
    if (this.#opts.keepaliveInterval > 0) {
      // Local drivers (test:///, qemu:///embed) have no keepalive: that is fine, not an error.
      const rc = await callAsync<number>(lib.virConnectSetKeepAlive, conn, this.#opts.keepaliveInterval, this.#opts.keepaliveCount)
      if (rc < 0) this.#log.debug({ uri: this.uri }, 'libvirt keepalive not available on this connection')
    }
    // One callback for every connection this instance opens: it must act on the connection
    // libvirt names, not on the one that was current when the callback was registered.
    this.#closeCb ??= koffi.register((closed: Pointer, reason: number) => {
      const why = CLOSE_REASONS[reason] ?? `reason ${reason}`
      setImmediate(() => {
        const current = this.#conn
        if (current !== null && koffi.address(current) === koffi.address(closed)) this.#drop(current, `connection closed by libvirt (${why})`)
      })
    }, koffi.pointer(lib.types.CloseCallback))
    await callAsync<number>(lib.virConnectRegisterCloseCallback, conn, this.#closeCb, null, null)
    this.#lifecycleCb ??= koffi.register(this.#onLifecycle.bind(this), koffi.pointer(lib.types.LifecycleCallback))
    this.#lifecycleId = await callAsync<number>(lib.virConnectDomainEventRegisterAny, conn, null, VIR_DOMAIN_EVENT_ID_LIFECYCLE, this.#lifecycleCb, null, null)
    if (this.#lifecycleId < 0) {
      this.#log.warn({ uri: this.uri, error: this.#lastError(conn, 'virConnectDomainEventRegisterAny').message }, 'no lifecycle events from libvirt; relying on the state poll')
    }
    this.#conn = conn
    this.#reconnectDelay = this.#opts.reconnectInitialMs
    this.#log.info({ uri: this.uri }, 'connected to libvirt')
    this.#events.emit('connection', { type: 'connected', uri: this.uri } satisfies ConnectionEvent)
  }

  #onLifecycle (_conn: Pointer, dom: Pointer, event: number, detail: number): number {
    try {
      const domain = this.#lib.virDomainGetName(dom) as string
      const type = LIFECYCLE_EVENT_NAMES[event]
      if (type === undefined) return 0
      const lifecycle: LifecycleEvent = { domain, type, detail, detailName: LIFECYCLE_DETAIL_NAMES[type][detail] ?? `detail_${detail}` }
      setImmediate(() => this.#events.emit('lifecycle', lifecycle))
    } catch (err) {
      this.#log.warn({ err }, 'cannot read a libvirt lifecycle event')
    }
    return 0
  }

  /** The connection is gone: forget it, free it in the background, tell listeners, reconnect. */
  #drop (conn: Pointer, reason: string): void {
    if (this.#conn !== conn || conn === null) return
    this.#conn = null
    const lifecycleId = this.#lifecycleId
    this.#lifecycleId = -1
    this.#log.warn({ uri: this.uri, reason }, 'libvirt connection lost')
    this.#events.emit('connection', { type: 'disconnected', uri: this.uri, reason } satisfies ConnectionEvent)
    this.#release(conn, lifecycleId).catch(() => {})
    this.#scheduleReconnect(reason)
  }

  /** Deregisters our callbacks and closes `conn`, all on workers: its locks may be held by libvirt's event thread. */
  async #release (conn: Pointer, lifecycleId: number): Promise<void> {
    const lib = this.#lib
    if (lifecycleId >= 0) await callAsync(lib.virConnectDomainEventDeregisterAny, conn, lifecycleId)
    await callAsync(lib.virConnectUnregisterCloseCallback, conn, this.#closeCb)
    await callAsync(lib.virConnectClose, conn)
  }

  #scheduleReconnect (reason: string, absent = false): void {
    if (!this.#opts.reconnect || this.#closed || this.#reconnectTimer !== null) return
    const { delayMs, nextBackoffMs } = reconnectDelay(this.#reconnectDelay, absent, { maxMs: this.#opts.reconnectMaxMs, whileDownMs: this.#opts.reconnectWhileDownMs })
    this.#reconnectDelay = nextBackoffMs
    this.#log.debug({ uri: this.uri, delayMs, reason }, 'reconnecting to libvirt')
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      this.#reconnectTimer = null
      this.connect().catch(() => {}) // a failure schedules the next attempt
    }, delayMs)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#reconnectTimer !== null) this.#timers.clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = null
    await this.#connecting?.catch(() => {})
    await this.#queue.catch(() => {})
    const conn = this.#conn
    this.#conn = null
    if (conn !== null) await this.#release(conn, this.#lifecycleId)
    this.#lifecycleId = -1
    if (this.#lifecycleCb !== null) koffi.unregister(this.#lifecycleCb as bigint)
    if (this.#closeCb !== null) koffi.unregister(this.#closeCb as bigint)
    this.#lifecycleCb = this.#closeCb = null
    const retained = this.#retained
    this.#retained = false
    this.#events.removeAllListeners()
    // Resolves once libvirt's event thread is idle, so that exiting right after close() is safe.
    if (retained) await eventLoop.release(this.#lib)
  }

  onLifecycle (listener: (event: LifecycleEvent) => void): () => void {
    this.#events.on('lifecycle', listener)
    return () => { this.#events.off('lifecycle', listener) }
  }

  onConnection (listener: (event: ConnectionEvent) => void): () => void {
    this.#events.on('connection', listener)
    return () => { this.#events.off('connection', listener) }
  }

  // -- plumbing --------------------------------------------------------------------------------

  /** Serializes `fn` on this connection. */
  #run<T> (operation: string, fn: (conn: Pointer) => Promise<T>): Promise<T> {
    const next = this.#queue.then(async () => {
      const conn = this.#conn
      if (conn === null) throw notConnected(operation, this.uri)
      return await fn(conn)
    })
    this.#queue = next.catch(() => {})
    return next
  }

  #lastError (conn: Pointer, operation: string): LibvirtError {
    const e = decodeError(this.#lib, this.#lib.virConnGetLastError(conn))
    return new LibvirtError(operation, e?.code ?? 1, e?.domain ?? 0, e?.message ?? `${operation} failed`)
  }

  /**
   * The error of a failed call. Unless libvirt answered about a domain or snapshot (so the
   * connection works), checks the connection is alive: a closed client socket is reported as a
   * plain internal error, and a dead connection that is not dropped would never be reopened.
   */
  async #fail (conn: Pointer, operation: string): Promise<LibvirtError> {
    const error = this.#lastError(conn, operation)
    if (!ANSWERED_ERROR_CODES.has(error.code)) {
      const alive = await callAsync<number>(this.#lib.virConnectIsAlive, conn)
      if (alive !== 1) this.#drop(conn, `${operation}: ${error.message}`)
    }
    return error
  }

  async #check (conn: Pointer, operation: string, rc: number): Promise<number> {
    if (rc < 0) throw await this.#fail(conn, operation)
    return rc
  }

  async #withDomain<T> (domain: string, operation: string, fn: (conn: Pointer, dom: Pointer) => Promise<T>): Promise<T> {
    return this.#run(operation, async (conn) => {
      const dom = await callAsync<Pointer>(this.#lib.virDomainLookupByName, conn, domain)
      if (dom === null) throw await this.#fail(conn, 'virDomainLookupByName')
      try {
        return await fn(conn, dom)
      } finally {
        this.#lib.virDomainFree(dom)
      }
    })
  }

  async #withSnapshot<T> (domain: string, snapshot: string, operation: string, fn: (conn: Pointer, snap: Pointer) => Promise<T>): Promise<T> {
    return this.#withDomain(domain, operation, async (conn, dom) => {
      const snap = await callAsync<Pointer>(this.#lib.virDomainSnapshotLookupByName, dom, snapshot, 0)
      if (snap === null) throw await this.#fail(conn, 'virDomainSnapshotLookupByName')
      try {
        return await fn(conn, snap)
      } finally {
        this.#lib.virDomainSnapshotFree(snap)
      }
    })
  }

  // -- domains ---------------------------------------------------------------------------------

  async domainExists (domain: string): Promise<boolean> {
    try {
      await this.#withDomain(domain, 'domainExists', async () => undefined)
      return true
    } catch (err) {
      if (err instanceof LibvirtError && err.isNoDomain) return false
      throw err
    }
  }

  async listDomains (): Promise<string[]> {
    return this.#run('virConnectListAllDomains', async (conn) => {
      const out: Pointer[] = [null]
      const count = await this.#check(conn, 'virConnectListAllDomains', await callAsync<number>(this.#lib.virConnectListAllDomains, conn, out, 0))
      const doms = takePointerArray(this.#lib, out[0] ?? null, count)
      try {
        return doms.map((d) => this.#lib.virDomainGetName(d) as string).sort()
      } finally {
        for (const d of doms) this.#lib.virDomainFree(d)
      }
    })
  }

  async domainState (domain: string): Promise<DomainStateInfo> {
    return this.#withDomain(domain, 'virDomainGetState', async (conn, dom) => {
      const state = [0]
      const reason = [0]
      await this.#check(conn, 'virDomainGetState', await callAsync<number>(this.#lib.virDomainGetState, dom, state, reason, 0))
      const name = DOMAIN_STATE_NAMES[state[0] ?? 0] ?? 'nostate'
      const r = reason[0] ?? 0
      return { state: name, reason: r, reasonName: DOMAIN_STATE_REASONS[name][r] ?? `reason_${r}` }
    })
  }

  async domainXml (domain: string): Promise<string> {
    return this.#withDomain(domain, 'virDomainGetXMLDesc', async (conn, dom) => {
      const xml = await callAsync<string | null>(this.#lib.virDomainGetXMLDesc, dom, 0)
      if (xml === null) throw await this.#fail(conn, 'virDomainGetXMLDesc')
      return xml
    })
  }

  async #domainCall (domain: string, operation: keyof LibvirtFfi, ...args: unknown[]): Promise<void> {
    await this.#withDomain(domain, operation, async (conn, dom) => {
      await this.#check(conn, operation, await callAsync<number>(this.#lib[operation] as LibvirtFfi['virDomainCreate'], dom, ...args))
    })
  }

  start (domain: string): Promise<void> { return this.#domainCall(domain, 'virDomainCreate') }
  shutdown (domain: string): Promise<void> { return this.#domainCall(domain, 'virDomainShutdown') }
  destroy (domain: string): Promise<void> { return this.#domainCall(domain, 'virDomainDestroy') }
  reboot (domain: string): Promise<void> { return this.#domainCall(domain, 'virDomainReboot', 0) }

  // -- snapshots -------------------------------------------------------------------------------

  async listSnapshots (domain: string): Promise<SnapshotInfo[]> {
    return this.#withDomain(domain, 'virDomainListAllSnapshots', async (conn, dom) => {
      const out: Pointer[] = [null]
      const count = await this.#check(conn, 'virDomainListAllSnapshots', await callAsync<number>(this.#lib.virDomainListAllSnapshots, dom, out, 0))
      const snaps = takePointerArray(this.#lib, out[0] ?? null, count)
      try {
        const infos: SnapshotInfo[] = []
        for (const snap of snaps) infos.push(await this.#snapshotInfo(conn, snap))
        return infos.sort((a, b) => a.creationTime - b.creationTime || a.name.localeCompare(b.name))
      } finally {
        for (const snap of snaps) this.#lib.virDomainSnapshotFree(snap)
      }
    })
  }

  async #snapshotInfo (conn: Pointer, snap: Pointer): Promise<SnapshotInfo> {
    const xml = await this.#xmlOf(conn, snap)
    const current = await this.#check(conn, 'virDomainSnapshotIsCurrent', await callAsync<number>(this.#lib.virDomainSnapshotIsCurrent, snap, 0))
    const info = parseSnapshotXml(xml, current === 1)
    info.name = this.#lib.virDomainSnapshotGetName(snap) as string
    return info
  }

  async currentSnapshot (domain: string): Promise<string | null> {
    return this.#withDomain(domain, 'virDomainSnapshotCurrent', async (conn, dom) => {
      const snap = await callAsync<Pointer>(this.#lib.virDomainSnapshotCurrent, dom, 0)
      if (snap === null) {
        const error = await this.#fail(conn, 'virDomainSnapshotCurrent')
        if (error.isNoSnapshot) return null
        throw error
      }
      return this.#nameAndFree(snap)
    })
  }

  /** The name of a snapshot handle we own, which is freed. */
  #nameAndFree (snap: Pointer): string {
    try {
      return this.#lib.virDomainSnapshotGetName(snap) as string
    } finally {
      this.#lib.virDomainSnapshotFree(snap)
    }
  }

  async #xmlOf (conn: Pointer, snap: Pointer): Promise<string> {
    const xml = await callAsync<string | null>(this.#lib.virDomainSnapshotGetXMLDesc, snap, 0)
    if (xml === null) throw await this.#fail(conn, 'virDomainSnapshotGetXMLDesc')
    return xml
  }

  async snapshotXml (domain: string, snapshot: string): Promise<string> {
    return this.#withSnapshot(domain, snapshot, 'virDomainSnapshotGetXMLDesc', (conn, snap) => this.#xmlOf(conn, snap))
  }

  async createSnapshot (domain: string, xml: string): Promise<string> {
    return this.#withDomain(domain, 'virDomainSnapshotCreateXML', async (conn, dom) => {
      const snap = await callAsync<Pointer>(this.#lib.virDomainSnapshotCreateXML, dom, xml, VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
      if (snap === null) throw await this.#fail(conn, 'virDomainSnapshotCreateXML')
      return this.#nameAndFree(snap)
    })
  }

  async revertToSnapshot (domain: string, snapshot: string): Promise<void> {
    await this.#withSnapshot(domain, snapshot, 'virDomainRevertToSnapshot', async (conn, snap) => {
      await this.#check(conn, 'virDomainRevertToSnapshot', await callAsync<number>(this.#lib.virDomainRevertToSnapshot, snap, VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING))
    })
  }

  async deleteSnapshot (domain: string, snapshot: string, options: { children?: boolean } = {}): Promise<void> {
    const flags = options.children ? VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN : 0
    await this.#withSnapshot(domain, snapshot, 'virDomainSnapshotDelete', async (conn, snap) => {
      await this.#check(conn, 'virDomainSnapshotDelete', await callAsync<number>(this.#lib.virDomainSnapshotDelete, snap, flags))
    })
  }

  // -- guest agent and screen ------------------------------------------------------------------

  async agentCommand (domain: string, command: string, timeoutSeconds: number): Promise<string> {
    return this.#withDomain(domain, 'virDomainQemuAgentCommand', async (conn, dom) => {
      const reply = await callAsync<string | null>(this.#lib.virDomainQemuAgentCommand, dom, command, Math.max(1, Math.round(timeoutSeconds)), 0)
      if (reply === null) throw await this.#fail(conn, 'virDomainQemuAgentCommand')
      return reply
    })
  }

  async screenshot (domain: string): Promise<Screenshot> {
    return this.#withDomain(domain, 'virDomainScreenshot', async (conn, dom) => {
      const lib = this.#lib
      const stream = await callAsync<Pointer>(lib.virStreamNew, conn, 0)
      if (stream === null) throw await this.#fail(conn, 'virStreamNew')
      let finished = false
      try {
        const mimeType = await callAsync<string | null>(lib.virDomainScreenshot, dom, stream, 0, 0)
        if (mimeType === null) throw await this.#fail(conn, 'virDomainScreenshot')
        const chunks: Buffer[] = []
        for (;;) {
          const buf = Buffer.alloc(256 * 1024)
          const got = await callAsync<number>(lib.virStreamRecv, stream, buf, buf.length)
          if (got < 0) throw await this.#fail(conn, 'virStreamRecv')
          if (got === 0) break
          chunks.push(buf.subarray(0, got))
        }
        await this.#check(conn, 'virStreamFinish', await callAsync<number>(lib.virStreamFinish, stream))
        finished = true
        return { mimeType, data: Buffer.concat(chunks) }
      } finally {
        if (!finished) await callAsync(lib.virStreamAbort, stream).catch(() => {})
        lib.virStreamFree(stream)
      }
    })
  }
}
