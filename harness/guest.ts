// Real-VM e2e harness: a real libvirtd + QEMU (TCG) running a tiny busybox guest that sends
// heartbeats with guest-scripts/linux/heartbeat.sh. The shell scripts in test/e2e/ do the host
// work (setup-host.sh, daemons.sh, build-guest.sh); this module drives them for the e2e tests
// and the benchmarks, defines and boots guests, and offers the loopback servers a guest talks to.
// See harness/README.md.
//
// virsh is used here, in test setup only: the service itself never shells out.
//
// Typical use (see guest-boot.test.ts):
//   const can = canRunE2E(); if (!can.ok) { t.plan(0, can.why); return }
//   t.teardown(teardown)
//   await setupHost()
//   const control = await createControlServer(); t.teardown(control.close)
//   const vm = await defineAndBoot({ name: 'kvw-e2e-x', heartbeatPort: PORT, controlPort: control.port })
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The folder of the e2e scripts. */
export const E2E_DIR = fileURLToPath(new URL('../test/e2e', import.meta.url))
/** Builds, pid files, logs and per-domain files (gitignored). KVW_E2E_CACHE overrides it. */
export const CACHE_DIR = process.env.KVW_E2E_CACHE ?? join(E2E_DIR, '.cache')
/** The libvirt URI of the e2e daemons. */
export const LIBVIRT_URI = 'qemu:///system'
/** The snapshot name the service reverts to. */
export const READY_SNAPSHOT = 'ready'
/** From inside the guest (QEMU user-mode network), this address is the host's 127.0.0.1. */
export const GUEST_HOST_ADDRESS = '10.0.2.2'

const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/
const CONTROL_COMMAND = /^(hang|resume|freeze-screen|panic|poweroff|revert:[A-Za-z0-9_.-]{1,100})$/

/** A command for the guest's control loop (see guest-init.sh). */
export type GuestCommand = 'hang' | 'resume' | 'freeze-screen' | 'panic' | 'poweroff' | `revert:${string}`

interface RunResult { stdout: string, stderr: string }

/** Runs a program; rejects with its stderr in the message when it fails or exceeds timeoutMs. */
export function run (file: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) {
        const how = error.killed ? `timed out after ${timeoutMs} ms` : `exited with ${error.code ?? error.signal}`
        reject(new Error(`${file} ${args.join(' ')} ${how}\n${stderr.trim()}`))
      } else {
        resolve({ stdout, stderr })
      }
    })
  })
}

/** `virsh -c qemu:///system ARGS...`; resolves with its stdout. */
export async function virsh (args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return (await run('virsh', ['-c', LIBVIRT_URI, ...args], timeoutMs)).stdout
}

/**
 * Whether this machine can run libvirtd + QEMU at all. `ok: false` only where it cannot (not
 * Linux, not root, neither apt-get nor an installed libvirt) or when KVW_E2E_SKIP=1; a host that
 * merely is not prepared yet is `ok: true`, and setupHost() then says what it would change.
 */
export function canRunE2E (): { ok: boolean, why: string } {
  if (process.env.KVW_E2E_SKIP === '1') return { ok: false, why: 'KVW_E2E_SKIP=1' }
  if (process.platform !== 'linux') return { ok: false, why: `libvirtd/QEMU e2e tests need Linux, this is ${process.platform}` }
  if (process.getuid?.() !== 0) return { ok: false, why: 'libvirtd/QEMU e2e tests need root (qemu:///system, apt-get); run as root or set KVW_E2E_SKIP=1' }
  const hasApt = existsSync('/usr/bin/apt-get')
  const hasLibvirt = existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/qemu-system-x86_64')
  if (!hasApt && !hasLibvirt) return { ok: false, why: 'neither apt-get (Debian) nor libvirtd + qemu-system-x86_64 are present' }
  return { ok: true, why: hasLibvirt ? 'root, libvirtd and QEMU present' : 'root, Debian: setup-host.sh will install libvirtd and QEMU' }
}

let lockHolder: ChildProcess | undefined

/**
 * Takes the e2e lock for this process: shared for ordinary e2e tests, exclusive for those that
 * stop libvirtd (killLibvirtd). The lock is a flock(1) child holding .cache/run/e2e.lock until
 * its stdin closes, so it ends with this process even when the process is killed.
 */
async function takeE2ELock (exclusive: boolean): Promise<void> {
  if (lockHolder !== undefined) return
  const lockFile = join(CACHE_DIR, 'run', 'e2e.lock')
  await mkdir(dirname(lockFile), { recursive: true })
  const holder = spawn('flock', [exclusive ? '-x' : '-s', lockFile, '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
  lockHolder = holder
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject)
    holder.once('exit', (code) => reject(new Error(`flock exited with ${code} before taking ${lockFile}`)))
    holder.stdout.once('data', () => resolve())
  })
  holder.removeAllListeners('exit')
  holder.stdout.resume()
  holder.unref()
  ;(holder.stdin as unknown as { unref?: () => void }).unref?.()
  ;(holder.stdout as unknown as { unref?: () => void }).unref?.()
}

function releaseE2ELock (): void {
  lockHolder?.stdin?.end()
  lockHolder = undefined
}

/**
 * Prepares the host (setup-host.sh: packages, qemu.conf, no default network; host changes only
 * with CI=true or KVW_E2E_ALLOW_HOST_CHANGES=1) and makes sure libvirtd answers, holding a lease
 * on the daemons for this process so that teardown() in a parallel test file does not stop them.
 * exclusive: wait until no other e2e test process runs, and keep them out until teardown() (for
 * tests that kill libvirtd); otherwise e2e test files may run side by side (tap's jobs).
 * Resolves with the scripts' log lines.
 */
export async function setupHost (options: { exclusive?: boolean } = {}): Promise<string> {
  await takeE2ELock(options.exclusive === true)
  const setup = await run(join(E2E_DIR, 'setup-host.sh'), [], 15 * 60_000)
  const acquire = await run(join(E2E_DIR, 'daemons.sh'), ['acquire', String(process.pid)], 60_000)
  leaseHeld = true
  return setup.stderr + acquire.stderr
}

/** Kernel and initramfs of the test guest. */
export interface GuestImage { kernel: string, initrd: string, key: string }

let guestImage: Promise<GuestImage> | undefined

/** Builds (or finds in the cache) the guest kernel + initramfs; once per process. */
export function buildGuest (): Promise<GuestImage> {
  guestImage ??= run(join(E2E_DIR, 'build-guest.sh'), [], 10 * 60_000).then(({ stdout }) => {
    const value = (key: string) => {
      const line = stdout.split('\n').find((l) => l.startsWith(`${key}=`))
      if (line === undefined) throw new Error(`build-guest.sh printed no ${key}= line:\n${stdout}`)
      return line.slice(key.length + 1)
    }
    return { kernel: value('KERNEL'), initrd: value('INITRD'), key: value('KEY') }
  })
  guestImage.catch(() => { guestImage = undefined })
  return guestImage
}

/** What defineAndBoot() needs. */
export interface BootOptions {
  /** libvirt domain name; an existing domain of that name is destroyed and undefined first. */
  name: string
  /** Port on 127.0.0.1 the guest sends heartbeats and revert requests to (the service's api_port). */
  heartbeatPort: number
  /** Port on 127.0.0.1 of a createControlServer(); without it the guest takes no commands. */
  controlPort?: number
  /** Sent as &vm=NAME with each heartbeat; omitted when not set. */
  guestVmName?: string
  /** Seconds between heartbeats (default 1). */
  heartbeatInterval?: number
  /** Guest RAM (default 128 MiB; 64 does not boot). */
  memoryMiB?: number
  /** false: define only, do not start (default true). */
  start?: boolean
}

/** A defined (and usually started) e2e guest. */
export interface E2EDomain {
  name: string
  /** The guest's serial console, appended to across reverts and restarts. */
  consoleLog: string
  /** The 16 MiB qcow2 disk that makes internal snapshots with memory state possible. */
  dataDisk: string
  /** The domain XML as defined. */
  xml: string
  /** performance.now() just before `virsh start` (undefined when start: false). */
  startedAt: number | undefined
  /** The serial console so far ('' before the guest wrote anything). */
  readConsole: () => Promise<string>
}

const definedDomains = new Set<string>()

function xmlEscape (value: string): string {
  return value.replace(/[&<>'"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

function checkPort (what: string, port: number | undefined): void {
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new Error(`${what} must be a TCP port 1-65535, got ${String(port)}`)
  }
}

/** Defines the e2e guest from domain.xml.template and starts it. */
export async function defineAndBoot (options: BootOptions): Promise<E2EDomain> {
  const { name, heartbeatPort, controlPort, guestVmName, heartbeatInterval = 1, memoryMiB = 128, start = true } = options
  if (!DOMAIN_NAME.test(name)) throw new Error(`domain name '${name}' must match ${DOMAIN_NAME}`)
  checkPort('heartbeatPort', heartbeatPort)
  checkPort('controlPort', controlPort)
  if (guestVmName !== undefined && !/^[A-Za-z0-9_.+-]{1,64}$/.test(guestVmName)) throw new Error(`guestVmName '${guestVmName}' must be 1-64 letters, digits or _ . + -`)
  if (!(heartbeatInterval > 0 && heartbeatInterval <= 3600)) throw new Error(`heartbeatInterval must be > 0 and <= 3600 s, got ${heartbeatInterval}`)
  if (!(Number.isInteger(memoryMiB) && memoryMiB >= 96)) throw new Error(`memoryMiB must be an integer >= 96, got ${memoryMiB}`)

  const image = await buildGuest()
  await removeDomain(name)
  const dir = join(CACHE_DIR, 'domains', name)
  await mkdir(dir, { recursive: true })
  const consoleLog = join(dir, 'console.log')
  const dataDisk = join(dir, 'data.qcow2')
  await writeFile(consoleLog, '')
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', dataDisk, '16M'])

  const cmdline = [
    'console=ttyS0', 'quiet',
    `kvw_url=http://${GUEST_HOST_ADDRESS}:${heartbeatPort}`,
    controlPort !== undefined ? `kvw_ctl=http://${GUEST_HOST_ADDRESS}:${controlPort}` : '',
    guestVmName !== undefined ? `kvw_vm=${guestVmName}` : '',
    `kvw_interval=${heartbeatInterval}`
  ].filter(Boolean).join(' ')
  const values: Record<string, string> = {
    DOMAIN_TYPE: process.env.KVW_E2E_KVM === '1' ? 'kvm' : 'qemu',
    NAME: name,
    MEMORY_MIB: String(memoryMiB),
    KERNEL: image.kernel,
    INITRD: image.initrd,
    CMDLINE: cmdline,
    DATA_DISK: dataDisk,
    CONSOLE_LOG: consoleLog
  }
  const template = await readFile(join(E2E_DIR, 'domain.xml.template'), 'utf8')
  const xml = template.replace(/<!--[\s\S]*?-->\n?/g, '').replace(/@([A-Z_]+)@/g, (whole, key: string) => {
    const value = values[key]
    if (value === undefined) throw new Error(`domain.xml.template has an unknown placeholder ${whole}`)
    return xmlEscape(value)
  })
  const xmlFile = join(dir, 'domain.xml')
  await writeFile(xmlFile, xml)
  await virsh(['define', xmlFile])
  definedDomains.add(name)
  let startedAt: number | undefined
  if (start) {
    startedAt = performance.now()
    await virsh(['start', name])
  }
  return { name, consoleLog, dataDisk, xml, startedAt, readConsole: () => readFile(consoleLog, 'utf8').catch(() => '') }
}

/** Destroys (if running) and undefines NAME with its snapshots' metadata, and deletes its files. No error when it does not exist. */
export async function removeDomain (name: string): Promise<void> {
  if (!DOMAIN_NAME.test(name)) throw new Error(`domain name '${name}' must match ${DOMAIN_NAME}`)
  const exists = await virsh(['domstate', name]).then(() => true, () => false)
  if (exists) {
    await virsh(['destroy', name]).catch(() => {}) // not running is fine
    await virsh(['undefine', name, '--snapshots-metadata'])
  }
  definedDomains.delete(name)
  await rm(join(CACHE_DIR, 'domains', name), { recursive: true, force: true })
}

/** `virsh domstate NAME`, e.g. 'running', 'shut off', 'paused'. */
export async function domainState (name: string): Promise<string> {
  return (await virsh(['domstate', name])).trim()
}

/** Creates snapshot SNAPSHOT (default 'ready', with memory state) of the running domain. */
export async function takeReadySnapshot (name: string, snapshot = READY_SNAPSHOT): Promise<void> {
  await virsh(['snapshot-create-as', name, snapshot])
}

/** Reverts NAME to SNAPSHOT (default 'ready'); libvirt 9 starts a new QEMU process for it. */
export async function revertToSnapshot (name: string, snapshot = READY_SNAPSHOT): Promise<void> {
  await virsh(['snapshot-revert', name, snapshot])
}

/** The guest's current screen as a PNG (`virsh screenshot`; the VNC picture). */
export async function screenshot (name: string): Promise<Buffer> {
  const file = join(CACHE_DIR, 'domains', name, `screen-${process.pid}-${Date.now()}.png`)
  await virsh(['screenshot', name, file])
  try {
    return await readFile(file)
  } finally {
    await rm(file, { force: true })
  }
}

/** Sends COMMAND (a JSON string) to the guest agent; resolves with the agent's JSON answer. */
export async function agentCommand (name: string, command: string, timeoutSeconds = 10): Promise<unknown> {
  return JSON.parse(await virsh(['qemu-agent-command', name, command, '--timeout', String(timeoutSeconds)]))
}

/**
 * Ends the libvirtd that the e2e scripts started, with SIGNAL (default SIGKILL: a crash; the
 * guests keep running). Refuses (rejects) when libvirtd was not started by them. Not for test
 * files that run in parallel with others using the daemons.
 */
export async function killLibvirtd (signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Promise<void> {
  await run(join(E2E_DIR, 'daemons.sh'), ['kill-libvirtd', signal.replace(/^SIG/, '')])
}

/** Starts libvirtd again after killLibvirtd(); resolves once qemu:///system answers. */
export async function startLibvirtd (): Promise<void> {
  await run(join(E2E_DIR, 'daemons.sh'), ['start-libvirtd'])
}

let leaseHeld = false

/**
 * Removes every domain this process defined (destroy, undefine with snapshot metadata, files),
 * then releases this process's lease on the daemons: when no other test process holds one, the
 * daemons that setup-host.sh started are stopped (by PID). Safe to call more than once; meant for
 * t.teardown(teardown), so it runs when a test fails too. KVW_E2E_KEEP_DAEMONS=1 keeps them.
 */
export async function teardown (): Promise<void> {
  const errors: unknown[] = []
  for (const name of [...definedDomains]) {
    await removeDomain(name).catch((error: unknown) => { errors.push(error) })
  }
  if (leaseHeld) {
    leaseHeld = false
    await run(join(E2E_DIR, 'daemons.sh'), ['release', String(process.pid)]).catch((error: unknown) => { errors.push(error) })
  }
  releaseE2ELock()
  if (errors.length > 0) throw new AggregateError(errors, `e2e teardown: ${errors.map(String).join('; ')}`)
}

/**
 * Polls CHECK every intervalMs until it returns something other than undefined/false, and
 * resolves with that; rejects naming WHAT after timeoutMs. Real time: a real VM has no clock to inject.
 */
export async function waitFor<T> (what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Real time to wait, for asserting that something does NOT happen. */
export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function listenOnLoopback (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server, port: number }> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port }
}

function closeServer (server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
}

/** The guest's control channel: the guest GETs /control once a second. */
export interface ControlServer {
  port: number
  /**
   * Queues COMMAND for the guest. Each command is handed out once (the guest's next poll takes
   * it), so a command given before a revert is not run again by the reverted guest.
   */
  setCommand: (command: GuestCommand) => void
  /** Commands queued and not yet taken by the guest. */
  pending: () => readonly string[]
  /** Commands the guest reported as done, oldest first, with performance.now() times. */
  acks: Array<{ command: string, at: number }>
  /** Boot ids the guest reported at each boot (a revert is not a boot). */
  boots: Array<{ bootId: string, at: number }>
  /** Resolves when the guest has acknowledged COMMAND after `since` (performance.now() ms, default 0). */
  waitForAck: (command: GuestCommand, timeoutMs: number, since?: number) => Promise<{ command: string, at: number }>
  close: () => Promise<void>
}

/** Starts the control server on 127.0.0.1 (random port) for BootOptions.controlPort. */
export async function createControlServer (): Promise<ControlServer> {
  const queue: string[] = []
  const acks: ControlServer['acks'] = []
  const boots: ControlServer['boots'] = []
  const { server, port } = await listenOnLoopback((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    let body = ''
    if (url.pathname === '/control') {
      body = queue.shift() ?? ''
    } else if (url.pathname === '/ack') {
      acks.push({ command: url.searchParams.get('cmd') ?? '', at: performance.now() })
    } else if (url.pathname === '/boot') {
      boots.push({ bootId: url.searchParams.get('id') ?? '', at: performance.now() })
    } else {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body)
  })
  return {
    port,
    acks,
    boots,
    setCommand (command) {
      if (!CONTROL_COMMAND.test(command)) throw new Error(`unknown guest command '${command}' (expected ${CONTROL_COMMAND})`)
      queue.push(command)
    },
    pending: () => [...queue],
    waitForAck: (command, timeoutMs, since = 0) =>
      waitFor(`the guest to acknowledge '${command}'`, () => acks.find((a) => a.command === command && a.at >= since), timeoutMs),
    close: () => closeServer(server)
  }
}

/** One GET /api/v1/heartbeat the recorder received. */
export interface HeartbeatHit { seq: number, status: string | null, vm: string | null, at: number }
/** One GET /api/v1/revert/request the recorder received. */
export interface RevertRequestHit { reason: string | null, vm: string | null, at: number }

/** A plain HTTP listener standing in for the service: records the guest's requests, answers 200. */
export interface HeartbeatRecorder {
  port: number
  heartbeats: HeartbeatHit[]
  revertRequests: RevertRequestHit[]
  /** Resolves with the first heartbeat received at or after `since` (performance.now() ms) that MATCHES. */
  waitForHeartbeat: (timeoutMs: number, since?: number, matches?: (hit: HeartbeatHit) => boolean) => Promise<HeartbeatHit>
  /** Resolves with the first revert request received at or after `since` that MATCHES. */
  waitForRevertRequest: (timeoutMs: number, since?: number, matches?: (hit: RevertRequestHit) => boolean) => Promise<RevertRequestHit>
  close: () => Promise<void>
}

/** Starts a HeartbeatRecorder on 127.0.0.1 (random port), for tests of the guest rather than the service. */
export async function createHeartbeatRecorder (): Promise<HeartbeatRecorder> {
  const heartbeats: HeartbeatHit[] = []
  const revertRequests: RevertRequestHit[] = []
  const { server, port } = await listenOnLoopback((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const at = performance.now()
    if (url.pathname === '/api/v1/heartbeat') {
      heartbeats.push({ seq: Number(url.searchParams.get('seq')), status: url.searchParams.get('status'), vm: url.searchParams.get('vm'), at })
    } else if (url.pathname === '/api/v1/revert/request') {
      revertRequests.push({ reason: url.searchParams.get('reason'), vm: url.searchParams.get('vm'), at })
    } else {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
  })
  return {
    port,
    heartbeats,
    revertRequests,
    waitForHeartbeat: (timeoutMs, since = 0, matches = () => true) =>
      waitFor('a heartbeat', () => heartbeats.find((h) => h.at >= since && matches(h)), timeoutMs),
    waitForRevertRequest: (timeoutMs, since = 0, matches = () => true) =>
      waitFor('a revert request', () => revertRequests.find((r) => r.at >= since && matches(r)), timeoutMs),
    close: () => closeServer(server)
  }
}
