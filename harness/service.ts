// The real service as a child process, for the service e2e tests and the benchmarks:
// `node --import tsx src/cli.ts serve --config FILE` on 127.0.0.1, its JSON log lines collected,
// and small helpers for its API (status, audit trail, heartbeat sequence over time).
//
//   const port = await freePort()
//   const vm = await defineAndBoot({ name, heartbeatPort: port, controlPort })
//   const config = await writeServiceConfig({ port, vmName: name })
//   const service = await startService(config); t.teardown(service.kill)
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  createControlServer, defineAndBoot, LIBVIRT_URI, setupHost, takeReadySnapshot, teardown, waitFor,
  type ControlServer, type E2EDomain
} from './guest.ts'

/** The repository root (where src/cli.ts is). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** A TCP port on 127.0.0.1 that was free a moment ago (listen on 0, read it, close). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** What writeServiceConfig() needs; every other key gets an e2e-friendly value. */
export interface ServiceConfigOptions {
  port: number
  vmName: string
  /** Default: a new temporary directory (removed by removeServiceConfig()). */
  dir?: string
  libvirtUri?: string
  /** Config keys to set or override (snake_case, as in config.yaml). */
  extra?: Record<string, unknown>
}

/** A config file written for one service under test. */
export interface ServiceConfig {
  file: string
  dir: string
  dataDir: string
  port: number
  vmName: string
}

/**
 * The e2e guests beat once a second. heartbeat_timeout is ten beats: a TCG guest on a loaded
 * 2-core machine (CI runs other work beside it) can miss a few beats without hanging, and a
 * false revert would fail a test that asserts "never reverted". Tests derive their waits from it.
 */
export const E2E_HEARTBEAT_TIMEOUT_S = 10
/** The first heartbeat ends it at once; the rig starts the service only once the guest has booted. */
export const E2E_STARTUP_GRACE_S = 30

/**
 * Writes a config for an e2e run: loopback only (listed as a guest network: QEMU user
 * networking), deadlines for a guest beating once a second
 * (heartbeat_timeout E2E_HEARTBEAT_TIMEOUT_S, startup_grace E2E_STARTUP_GRACE_S,
 * post_revert_grace 60 s), room for many reverts, rate limits out of the way of a test that polls
 * the status every 100 ms. The file is JSON (a subset of YAML).
 */
export async function writeServiceConfig (options: ServiceConfigOptions): Promise<ServiceConfig> {
  const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'kvw-e2e-service-'))
  const dataDir = join(dir, 'data')
  const config = {
    libvirt_uri: options.libvirtUri ?? LIBVIRT_URI,
    vm_name: options.vmName,
    snapshot_name: 'ready',
    heartbeat_timeout: E2E_HEARTBEAT_TIMEOUT_S,
    startup_grace: E2E_STARTUP_GRACE_S,
    post_revert_grace: 60,
    heartbeat_check_interval: 5,
    max_reverts: 50,
    revert_window: 3600,
    revert_retry_initial: 1,
    revert_retry_max: 5,
    api_host: '127.0.0.1',
    api_port: options.port,
    log_level: 'debug',
    data_dir: dataDir,
    libvirt_keepalive_interval: 2,
    libvirt_keepalive_count: 3,
    libvirt_reconnect_max: 2,
    ...options.extra,
    // QEMU user networking: the guest's requests come from the host's loopback, so loopback is
    // listed as a guest network (the default is libvirt's NAT network only). A test's own
    // `security` replaces the rate limits below (the flood test wants the defaults), not this.
    security: {
      guest_networks: ['127.0.0.0/8', '::1'],
      ...((options.extra?.security as Record<string, unknown> | undefined) ?? { rate_limit_read: 1_000_000, rate_limit_admin: 100_000, rate_limit_guest: 100_000 })
    }
  }
  const file = join(dir, 'config.yaml')
  await writeFile(file, JSON.stringify(config, null, 2) + '\n')
  return { file, dir, dataDir, port: options.port, vmName: options.vmName }
}

/** Removes the directory writeServiceConfig() made (config, data dir, audit trail). */
export async function removeServiceConfig (config: ServiceConfig): Promise<void> {
  await rm(config.dir, { recursive: true, force: true })
}

/** One JSON log line of the service, with the time (Date.now()) it was read. */
export interface ServiceLogLine { msg?: string, level?: number, time?: number, receivedAt: number, [field: string]: unknown }

/** An entry of the audit trail as GET /api/v1/events returns it. */
export interface AuditEntryView { vm: string, kind: string, ts: string, reason?: string, [field: string]: unknown }

/** A running service child process. */
export interface ServiceProcess {
  pid: number
  port: number
  config: ServiceConfig
  /** Parsed JSON log lines so far (stdout). */
  logs: ServiceLogLine[]
  /** Whatever was not a JSON log line (stderr, stray stdout), for failure messages. */
  otherOutput: () => string
  /** Date.now() when the process was spawned. */
  spawnedAt: number
  /** Resolves when the process ends. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Whether the process has ended. */
  hasExited: () => boolean
  /** Resolves with the first log line at or after `since` (Date.now() ms) that MATCHES. */
  waitForLog: (what: string, matches: (line: ServiceLogLine) => boolean, timeoutMs: number, since?: number) => Promise<ServiceLogLine>
  /** GET (or POST) a path on the API; resolves with status and parsed JSON body. */
  request: (method: 'GET' | 'POST', path: string) => Promise<{ status: number, body: any }>
  /** GET a path that must answer 200; resolves with the JSON body. */
  get: (path: string) => Promise<any>
  /** The audit trail, newest first (optionally one kind). */
  events: (kind?: string) => Promise<AuditEntryView[]>
  /** SIGKILL (a crash) and wait for the exit. Safe to call when it has exited. */
  kill: () => Promise<void>
  /** SIGTERM (graceful stop) and wait for the exit, SIGKILL after 20 s. */
  stop: () => Promise<void>
}

const running = new Set<ChildProcess>()
// A test process that dies without its teardown must not leave a service holding the port.
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

/**
 * Starts `node --import tsx src/cli.ts serve --config FILE` and resolves once its API answers.
 * Rejects (and kills it) when it exits or does not answer within timeoutMs.
 */
export async function startService (config: ServiceConfig, options: { timeoutMs?: number, entry?: string[] } = {}): Promise<ServiceProcess> {
  const entry = options.entry ?? ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts')]
  const spawnedAt = Date.now()
  const child = spawn(process.execPath, [...entry, 'serve', '--config', config.file], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KVW_CONFIG: config.file }
  })
  if (child.pid === undefined) throw new Error('could not spawn the service')
  const pid = child.pid
  running.add(child)
  const logs: ServiceLogLine[] = []
  let other = ''
  let partial = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const receivedAt = Date.now()
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (line.trim() === '') continue
      try {
        logs.push({ ...JSON.parse(line), receivedAt })
      } catch {
        other += line + '\n'
      }
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { other = (other + chunk).slice(-20_000) })
  let ended = false
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      ended = true
      running.delete(child)
      resolve({ code, signal })
    })
  })
  const base = `http://127.0.0.1:${config.port}`

  const request = async (method: 'GET' | 'POST', path: string) => {
    const res = await fetch(base + path, { method, signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    let body: unknown = text
    try { body = JSON.parse(text) } catch {}
    return { status: res.status, body: body as any }
  }
  const get = async (path: string) => {
    const { status, body } = await request('GET', path)
    if (status !== 200) throw new Error(`GET ${path} answered ${status}: ${JSON.stringify(body)}`)
    return body
  }
  const killWith = async (signal: NodeJS.Signals, graceMs: number) => {
    if (ended) return
    child.kill(signal)
    const timer = setTimeout(() => { if (!ended) child.kill('SIGKILL') }, graceMs)
    await exited
    clearTimeout(timer)
  }

  const service: ServiceProcess = {
    pid,
    port: config.port,
    config,
    logs,
    otherOutput: () => other,
    spawnedAt,
    exited,
    hasExited: () => ended,
    waitForLog: (what, matches, timeoutMs, since = 0) =>
      waitFor(`service log: ${what}`, () => {
        if (ended) throw new Error(`the service exited while waiting for log: ${what}\n${other}`)
        return logs.find((l) => l.receivedAt >= since && matches(l))
      }, timeoutMs),
    request,
    get,
    events: async (kind) => (await get(`/api/v1/events?limit=1000${kind ? `&kind=${kind}` : ''}`)).events as AuditEntryView[],
    kill: () => killWith('SIGKILL', 0),
    stop: () => killWith('SIGTERM', 20_000)
  }

  try {
    await waitFor('the service API to answer', async () => {
      if (ended) throw new Error(`the service exited before answering: ${JSON.stringify(await exited)}\n${other}`)
      return await request('GET', '/api/v1/heartbeat/status').then((r) => r.status === 200, () => false)
    }, options.timeoutMs ?? 60_000, 100)
  } catch (err) {
    await service.kill()
    throw err
  }
  return service
}

/** One heartbeat the service recorded, as seen by polling GET /api/v1/heartbeat/status. */
export interface SeenBeat { seq: number | null, total: number, at: number }

/** Polls the service's heartbeat status (every intervalMs) and records each new heartbeat. */
export interface BeatWatcher {
  beats: SeenBeat[]
  /** Resolves with the first beat seen at or after `since` (Date.now() ms) that MATCHES. */
  waitForBeat: (timeoutMs: number, since?: number, matches?: (beat: SeenBeat) => boolean) => Promise<SeenBeat>
  /** The highest seq seen (before `until`, Date.now() ms). */
  maxSeq: (until?: number) => number
  stop: () => void
}

/**
 * Watches heartbeats through the service (heartbeats_total goes up by one per beat; last_seq is
 * the guest's counter). A 100 ms poll does not miss a once-a-second beat; errors (service down)
 * are ignored, so it keeps going across a service restart when `service()` returns the new one.
 * With `vm`, one VM of several (/api/v1/vms/VM/heartbeat/status); else the default VM.
 */
export function watchBeats (service: () => ServiceProcess, intervalMs = 100, vm?: string): BeatWatcher {
  const path = vm === undefined ? '/api/v1/heartbeat/status' : `/api/v1/vms/${encodeURIComponent(vm)}/heartbeat/status`
  const what = vm === undefined ? 'a heartbeat seen by the service' : `a heartbeat of ${vm} seen by the service`
  const beats: SeenBeat[] = []
  let lastTotal = -1
  let timer: NodeJS.Timeout | null = null
  let stopped = false
  const poll = async () => {
    const s = service()
    try {
      const hb = await s.get(path)
      // A restarted service counts from 0 again. Told by the count going down, not by the process
      // object: until the rig holds the new one, a poll through the old object already reaches
      // the new process on the same port (keyed by pid, that beat was recorded twice).
      if (hb.heartbeats_total < lastTotal) lastTotal = 0
      if (hb.heartbeats_total !== lastTotal) {
        lastTotal = hb.heartbeats_total
        if (hb.heartbeats_total > 0) beats.push({ seq: hb.last_seq, total: hb.heartbeats_total, at: Date.now() })
      }
    } catch {}
    if (!stopped) timer = setTimeout(poll, intervalMs)
  }
  poll().catch(() => {})
  return {
    beats,
    waitForBeat: (timeoutMs, since = 0, matches = () => true) =>
      waitFor(what, () => beats.find((b) => b.at >= since && matches(b)), timeoutMs),
    maxSeq: (until = Infinity) => Math.max(-1, ...beats.filter((b) => b.at < until).map((b) => b.seq ?? -1)),
    stop: () => {
      stopped = true
      if (timer) clearTimeout(timer)
    }
  }
}

/**
 * A loopback HTTP proxy between the guest and the service: records each heartbeat's arrival
 * (Date.now(), before the service sees it; also while the service is down) and forwards every
 * request as it is (502 when the service does not answer). Its `beats` work like watchBeats()'s,
 * without polling the service.
 */
export interface HeartbeatProxy extends BeatWatcher {
  port: number
  close: () => Promise<void>
}

export async function createHeartbeatProxy (targetPort: number): Promise<HeartbeatProxy> {
  const beats: SeenBeat[] = []
  const server = createHttpServer((req, res) => {
    const at = Date.now()
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === '/api/v1/heartbeat') {
      const seq = url.searchParams.get('seq')
      beats.push({ seq: seq === null ? null : Number(seq), total: beats.length + 1, at })
    }
    const upstream = httpRequest({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502).end() })
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    beats,
    waitForBeat: (timeoutMs, since = 0, matches = () => true) =>
      waitFor('a heartbeat through the proxy', () => beats.find((b) => b.at >= since && matches(b)), timeoutMs, 5),
    maxSeq: (until = Infinity) => Math.max(-1, ...beats.filter((b) => b.at < until).map((b) => b.seq ?? -1)),
    stop: () => {},
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

/** Resolves with the first audit entry of KIND with ts at or after `since` (Date.now() ms) that MATCHES. */
export function waitForAudit (service: ServiceProcess, kind: string, timeoutMs: number, since = 0, matches: (e: AuditEntryView) => boolean = () => true): Promise<AuditEntryView> {
  return waitFor(`audit entry ${kind}`, async () => {
    const events = await service.events(kind).catch(() => [])
    // Oldest first among those that match.
    return [...events].reverse().find((e) => Date.parse(e.ts) >= since && matches(e))
  }, timeoutMs, 100)
}

/** Resolves with the watchdog part of GET /api/v1/status once CHECK accepts it. */
export function waitForStatus (service: ServiceProcess, what: string, check: (status: any) => boolean, timeoutMs: number): Promise<any> {
  return waitFor(`service status: ${what}`, async () => {
    const status = await service.get('/api/v1/status').catch(() => null)
    return status !== null && check(status) ? status : undefined
  }, timeoutMs, 100)
}

/**
 * The first heartbeat of the reverted guest: at or after `since` (Date.now() ms, when the revert
 * began) and with a seq below the last one seen before it. The guest's counter only goes down by
 * a revert; a beat of the old guest still in flight when the revert began has a higher seq.
 */
export function firstBeatAfterRevert (beats: BeatWatcher, since: number, timeoutMs: number): Promise<SeenBeat> {
  const before = beats.beats.filter((b) => b.at < since).at(-1)?.seq ?? Infinity
  return beats.waitForBeat(timeoutMs, since, (b) => b.seq !== null && b.seq < before)
}

/** What one revert looked like from outside: its audit entries, the first beat after it, the status once recovered. */
export interface RevertCycle { started: AuditEntryView, finished: AuditEntryView, firstBeat: SeenBeat, status: any }

/** Waits for a revert_started (at or after `since`, Date.now() ms) that MATCHES, then for its end and the recovery. */
export async function revertCycle (service: ServiceProcess, beats: BeatWatcher, since: number, matches: (e: AuditEntryView) => boolean): Promise<RevertCycle> {
  const started = await waitForAudit(service, 'revert_started', 90_000, since, matches)
  const startedAt = Date.parse(started.ts)
  const finished = await waitForAudit(service, 'revert_finished', 90_000, startedAt, (e) => e.reason === started.reason)
  const firstBeat = await firstBeatAfterRevert(beats, startedAt, 90_000)
  const status = await waitForStatus(service, 'healthy again after the revert', (s) =>
    s.watchdog.state === 'healthy' && s.watchdog.last_revert?.at === started.ts && s.watchdog.last_revert?.outcome === 'recovered', 60_000)
  return { started, finished, firstBeat, status }
}

export interface RigOptions {
  /** Config keys to set or override. */
  extraConfig?: Record<string, unknown>
  /** The guest talks to a recording proxy in front of the service (exact arrival times, no status polling). */
  viaProxy?: boolean
  /** node arguments that run the service (default: src/cli.ts through tsx). */
  entry?: string[]
}

/**
 * One guest + the service watching it, for a test file: create it (no I/O), register its close()
 * as the test's teardown, then start() it. start() takes the e2e lock (exclusive: alone, for
 * tests that kill libvirtd), boots the guest with its heartbeats going to the service's port,
 * starts the service and waits for heartbeats through it; takeSnapshot() then makes `ready`.
 */
export class ServiceRig {
  readonly name: string
  control: ControlServer | undefined
  vm: E2EDomain | undefined
  config: ServiceConfig | undefined
  /** The current service process (replace it after a restart: the beat watcher follows). */
  service: ServiceProcess | undefined
  beats: BeatWatcher | undefined
  /** The guest's seq just before and just after `ready` was taken. */
  snapshotSeq: { before: number, after: number } | undefined
  /** With viaProxy: the proxy the guest's requests go through. */
  proxy: HeartbeatProxy | undefined
  readonly #options: RigOptions

  constructor (name: string, options: RigOptions = {}) {
    this.name = name
    this.#options = options
  }

  async start (options: { exclusive?: boolean } = {}): Promise<void> {
    await setupHost(options)
    this.control = await createControlServer()
    const port = await freePort()
    if (this.#options.viaProxy === true) this.proxy = await createHeartbeatProxy(port)
    this.vm = await defineAndBoot({ name: this.name, heartbeatPort: this.proxy?.port ?? port, controlPort: this.control.port })
    // A boot that is waited for, not guessed: the guest reports it once its heartbeat loop runs
    // (a TCG boot takes 10 s idle, 50 s and more on a busy machine). Only then the service starts,
    // so its startup grace is not spent on the boot.
    const control = this.control
    await waitFor('the guest to report its boot', () => control.boots.length > 0, 300_000, 100)
    this.config = await writeServiceConfig({ port, vmName: this.name, extra: this.#options.extraConfig ?? {} })
    this.service = await startService(this.config, this.#options.entry ? { entry: this.#options.entry } : {})
    this.beats = this.proxy ?? watchBeats(() => this.service!)
    await this.beats.waitForBeat(90_000, 0, (beat) => (beat.seq ?? 0) >= 2)
    // The service has seen one too (through the proxy, it may have been down at first).
    await waitForStatus(this.service, 'a heartbeat', (s) => s.heartbeat.heartbeats_total > 0, 60_000)
  }

  /** Takes `ready` (virsh, with memory) while the guest beats and records the seq around it. */
  async takeSnapshot (): Promise<{ before: number, after: number }> {
    const beats = this.beats!
    const before = beats.maxSeq()
    await takeReadySnapshot(this.name)
    const after = (await beats.waitForBeat(60_000, Date.now())).seq ?? -1
    this.snapshotSeq = { before, after }
    return this.snapshotSeq
  }

  /** Whether SEQ is the guest's seq at snapshot time (one poll may miss a beat: +2). */
  isSnapshotSeq (seq: number | null): boolean {
    const s = this.snapshotSeq
    return s !== undefined && seq !== null && seq >= s.before && seq <= s.after + 2
  }

  /** Kills the service, removes the guest and the config dir, releases the daemons. On failure, comments the service log and guest console first. */
  async close (failed: boolean, comment: (text: string) => void): Promise<void> {
    if (failed && this.service) {
      comment(`service log (last 40 lines):\n${this.service.logs.slice(-40).map((l) => JSON.stringify(l)).join('\n')}\n${this.service.otherOutput()}`)
    }
    if (failed && this.vm) comment(`guest console:\n${await this.vm.readConsole()}`)
    this.beats?.stop()
    await this.service?.kill()
    await this.control?.close()
    await this.proxy?.close()
    if (this.config) await removeServiceConfig(this.config)
    await teardown()
  }
}
