// A Debian 12 container booted by systemd-nspawn with real systemd 252 as its PID 1, for the
// real-systemd suite (../shared/notes/systemd-in-a-container.md has the measured facts).
// - The root file system is built once per machine by build-rootfs.sh (cached outside the
//   checkout) and booted with --volatile=overlay: every change lands in a tmpfs and is gone at
//   halt, so the cached tree stays pristine.
// - --private-network: nothing leaves the container but its own loopback.
// - The host has no systemd/D-Bus: --register=no --keep-unit, from a cgroup of our own, and
//   commands run inside through nsenter into the container's PID 1.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'

const HERE = fileURLToPath(new URL('.', import.meta.url))

export interface Run { code: number | null, out: string, err: string }

/** Why the suite cannot run here, or null. Only "nspawn cannot run at all" reasons. */
export function cannotRun (): string | null {
  if (process.platform !== 'linux') return 'systemd-nspawn needs Linux'
  if (process.getuid?.() !== 0) return 'systemd-nspawn needs root (run the suite as root, as .ci/run does)'
  for (const [tool, pkg] of [['systemd-nspawn', 'systemd-container'], ['nsenter', 'util-linux']] as const) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (Debian package ${pkg}; scripts/install-deps.sh test installs it)`
  }
  if (!existsSync('/sys/fs/cgroup/systemd') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup file system for systemd-nspawn'
  return null
}

/** Builds (or finds) the cached root file system; returns its path. */
export function rootfs (): string {
  const r = spawnSync('sh', [join(HERE, 'build-rootfs.sh')], { encoding: 'utf8', timeout: 20 * 60_000 })
  if (r.status !== 0) throw new Error(`build-rootfs.sh failed (${r.status}): ${r.stderr}`)
  return r.stdout.trim().split('\n').pop()!
}

function cgroupRoots (): string[] {
  return ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].filter((d) => existsSync(join(d, 'cgroup.procs')))
}

function removeCgroup (dir: string): void {
  if (!existsSync(dir)) return
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroup(join(dir, e.name))
  try { rmdirSync(dir) } catch {}
}

/** The processes in our cgroup tree: the container's and nspawn's only (the tree is ours alone). */
function cgroupPids (dir: string): number[] {
  if (!existsSync(dir)) return []
  const own = (() => { try { return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number) } catch { return [] } })()
  return [...own, ...readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => cgroupPids(join(dir, e.name)))]
}

export class Container {
  readonly name: string
  readonly pid1: number
  readonly #nspawn: ChildProcess
  readonly #cgroups: string[]
  readonly bootMs: number

  private constructor (name: string, nspawn: ChildProcess, pid1: number, cgroups: string[], bootMs: number) {
    this.name = name
    this.#nspawn = nspawn
    this.pid1 = pid1
    this.#cgroups = cgroups
    this.bootMs = bootMs
  }

  static async boot (root: string, options: { binds?: string[] } = {}): Promise<Container> {
    const name = `kvw-${process.pid}`
    const cgroups = cgroupRoots().map((r) => join(r, name))
    for (const c of cgroups) mkdirSync(c, { recursive: true })
    const args = [
      '-D', root, '-M', name, '--boot', '--register=no', '--keep-unit', '--console=read-only', '--private-network',
      '--volatile=overlay', '--bind-ro=/usr/bin/node:/usr/local/bin/node', ...(options.binds ?? []).map((b) => `--bind-ro=${b}`)
    ]
    // The shell moves itself into our cgroup, then becomes nspawn.
    const script = cgroups.map((c) => `echo $$ > ${c}/cgroup.procs`).join('; ') + '; exec systemd-nspawn "$@"'
    const started = Date.now()
    const nspawn = spawn('sh', ['-c', script, 'sh', ...args], {
      env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let log = ''
    nspawn.stdout!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-20_000) })
    nspawn.stderr!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-20_000) })
    let pid1 = 0
    for (let i = 0; i < 200 && pid1 === 0; i++) {
      await delay(50)
      if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}: ${log}`)
      const r = spawnSync('pgrep', ['-P', String(nspawn.pid)], { encoding: 'utf8' })
      const child = Number(r.stdout.trim().split('\n')[0])
      if (child > 0 && spawnSync('cat', [`/proc/${child}/comm`], { encoding: 'utf8' }).stdout.trim() === 'systemd') pid1 = child
    }
    if (pid1 === 0) {
      nspawn.kill('SIGTERM')
      await delay(3000)
      for (const c of cgroups) removeCgroup(c)
      throw new Error(`no systemd in the container after 10 s: ${log}`)
    }
    const c = new Container(name, nspawn, pid1, cgroups, 0)
    // PID 1 answers systemctl only once its private socket exists: until then "Failed to connect to bus".
    let running = c.sh('systemctl is-system-running --wait', 60_000)
    for (let i = 0; i < 300 && /Failed to connect to bus/.test(running.err); i++) {
      await delay(100)
      running = c.sh('systemctl is-system-running --wait', 60_000)
    }
    const bootMs = Date.now() - started
    if (!/running|degraded/.test(running.out)) {
      const failed = c.sh('systemctl --failed --no-legend').out
      await c.halt()
      throw new Error(`the container did not boot: ${running.out}${running.err}\n${failed}`)
    }
    return new Container(name, nspawn, pid1, cgroups, bootMs)
  }

  /** A shell command inside the container, as root, in PID 1's namespaces. */
  sh (command: string, timeoutMs = 60_000, input?: string): Run {
    const r = spawnSync('nsenter', ['-t', String(this.pid1), '-a', '/bin/sh', '-c', command], {
      encoding: 'utf8', timeout: timeoutMs, ...(input === undefined ? {} : { input }), env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '' }
    })
    return { code: r.status, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
  }

  /** Like sh, but throws with the output when the command fails. */
  ok (command: string, timeoutMs = 60_000): string {
    const r = this.sh(command, timeoutMs)
    if (r.code !== 0) throw new Error(`in the container: ${command}\nexit ${r.code}\n${r.out}${r.err}`)
    return r.out
  }

  /** Copies a host file into the container (its tmpfs overlay). */
  put (hostPath: string, containerPath: string): void {
    execFileSync('sh', ['-c', `cat "$0" | nsenter -t ${this.pid1} -a sh -c 'cat > "$0"' "$1"`, hostPath, containerPath])
  }

  write (containerPath: string, text: string): void {
    const r = this.sh(`cat > '${containerPath}'`, 10_000, text)
    if (r.code !== 0) throw new Error(`cannot write ${containerPath}: ${r.err}`)
  }

  /** Polls `probe` until it returns a value (not undefined) or the time is up. */
  async until<T> (what: string, probe: () => T | undefined, timeoutMs: number, everyMs = 200): Promise<T> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const v = probe()
      if (v !== undefined) return v
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await delay(everyMs)
    }
  }

  #halted: Promise<void> | null = null

  /** Powers the container off (SIGTERM to nspawn); whatever is left after 30 s is killed. Idempotent. */
  halt (): Promise<void> {
    this.#halted ??= this.#halt()
    return this.#halted
  }

  async #halt (): Promise<void> {
    if (this.#nspawn.exitCode === null && this.#nspawn.signalCode === null) {
      const exited = new Promise((resolve) => this.#nspawn.once('exit', resolve))
      this.#nspawn.kill('SIGTERM')
      await Promise.race([exited, delay(30_000)])
    }
    // A container whose nspawn died survives it (its PID 1 is reparented): kill its PID 1, which
    // ends its PID namespace, then anything still in our cgroup tree (only ever ours).
    for (let round = 0; round < 50; round++) {
      const left = [...new Set(this.#cgroups.flatMap(cgroupPids))]
      if (left.length === 0) break
      const victims = round === 0 && left.includes(this.pid1) ? [this.pid1] : left
      for (const pid of victims) { try { process.kill(pid, 'SIGKILL') } catch {} }
      await delay(200)
    }
    for (let i = 0; i < 25 && this.#cgroups.some((c) => existsSync(c)); i++) {
      for (const c of this.#cgroups) removeCgroup(c)
      if (this.#cgroups.some((c) => existsSync(c))) await delay(200)
    }
  }
}
