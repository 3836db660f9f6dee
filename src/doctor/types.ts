// What a doctor check is and what it may touch. Everything that reaches the host (commands,
// files, the user, sockets) goes through `Host`, so tests swap in scratch paths and recorded
// command output; libvirt goes through the Hypervisor interface (test:///default in tests).
import type { ConfigError, LoadedConfig } from '../config/load.ts'
import type { WatchdogView } from '../heartbeat/watchdog.ts'
import type { Hypervisor } from '../libvirt/index.ts'

export type CheckLevel = 'ok' | 'warn' | 'fail'

export interface CheckResult {
  /** Stable id, e.g. `libvirt`, `snapshot:kiosk` (per-VM checks end in `:VM`). */
  id: string
  level: CheckLevel
  /** What the check found. */
  message: string
  /** What to do about it: a command to run or a config key to change. */
  fix?: string
}

export interface CommandResult {
  /** Exit code; null when the command did not run to an end (missing, timed out, killed). */
  code: number | null
  stdout: string
  stderr: string
  /** Why it did not run: 'ENOENT' (no such program), 'timeout', or another errno/message. */
  error?: string
}

export interface UserInfo {
  username: string
  uid: number
  gid: number
}

/** The host as the checks see it. `realHost()` in host.ts is the real one. */
export interface Host {
  /** Runs a program (no shell); never throws. */
  run (command: string, args: string[], timeoutMs: number): Promise<CommandResult>
  user (): UserInfo
  /** Numeric ids of the groups this process has now (supplementary + primary). */
  processGroups (): number[]
  /** Bytes available to unprivileged users on the file system holding `path`. */
  freeBytes (path: string): Promise<number>
  /** Whether `host:port` can be bound now: 'free', 'in_use', or another errno. */
  tryBind (host: string, port: number): Promise<'free' | 'in_use' | string>
  /** GET http://127.0.0.1:port/path (loopback only); null when nothing answers. */
  httpGetLoopback (port: number, path: string, timeoutMs: number): Promise<{ status: number, body: string } | null>
  paths: {
    /** /dev/kvm */
    kvm: string
    /** /etc/group */
    groupFile: string
    /** /etc/libvirt/qemu/networks: libvirt's persistent network definitions (read-only). */
    libvirtNetworks: string
    /** /run/systemd/system: exists when systemd booted the host (sd_booted(3)); readable even
     * where /proc/1 is not (the service's ProtectProc=invisible). */
    systemdRunDir: string
    /** /var/lib/kiosk-vm-watchdog: the state directory systemd gives the installed service
     * (StateDirectory=, KVW_DATA_DIR in its unit). */
    serviceStateDir: string
  }
}

/** What the doctor needs of a watchdog (src/heartbeat/watchdog.ts). */
export interface WatchdogLike {
  view (): WatchdogView
}

export interface DoctorContext {
  /** The file that was (or would have been) read; null: defaults only. */
  configFile: string | null
  /** The loaded config, or null when it is not valid (configError says why). */
  loaded: LoadedConfig | null
  configError: ConfigError | null
  hypervisor: Hypervisor | null
  host: Host
  now (): number
  /** Set when the doctor runs inside the service (the HTTP route). */
  service?: {
    watchdogs: Map<string, WatchdogLike> | undefined
  }
  /** Per-run memo of expensive reads (domain XML...), shared by the checks. */
  memo: Map<string, Promise<unknown>>
}

export interface Check {
  id: string
  /** Milliseconds before the check is reported as failed; default DEFAULT_CHECK_TIMEOUT_MS. */
  timeoutMs?: number
  run (ctx: DoctorContext): Promise<Omit<CheckResult, 'id'> & { id?: string }>
}

export const DEFAULT_CHECK_TIMEOUT_MS = 5000
