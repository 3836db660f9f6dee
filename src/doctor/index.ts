// The doctor: independent checks of the host, libvirt, each VM and the service around it, each
// saying what it found and, when something is wrong, the exact fix. Used by the CLI (`doctor`,
// `check-config`) and by GET /api/v1/doctor.
import type { ConfigError, LoadedConfig } from '../config/load.ts'
import type { Hypervisor } from '../libvirt/index.ts'
import { realHost } from './host.ts'
import { doctorChecks, runChecks, type DoctorReport } from './run.ts'
import type { DoctorContext, Host, WatchdogLike } from './types.ts'

export { doctorChecks, formatResults, isCheckConfigId, runCheck, runChecks, type DoctorReport } from './run.ts'
export { realHost } from './host.ts'
export type { Check, CheckResult, CommandResult, Host, WatchdogLike } from './types.ts'

export interface DoctorOptions {
  configFile: string | null
  loaded: LoadedConfig | null
  configError?: ConfigError | null
  hypervisor: Hypervisor | null
  host?: Host
  now?: () => number
  /** Inside the service: the live watchdogs (app.watchdogs). */
  service?: { watchdogs: Map<string, WatchdogLike> | undefined }
  /** Only the checks whose id passes (check-config passes isCheckConfigId). */
  only?: (id: string) => boolean
}

export function doctorContext (options: DoctorOptions): DoctorContext {
  return {
    configFile: options.configFile,
    loaded: options.loaded,
    configError: options.configError ?? null,
    hypervisor: options.hypervisor,
    host: options.host ?? realHost(),
    now: options.now ?? Date.now,
    ...(options.service ? { service: options.service } : {}),
    memo: new Map()
  }
}

export async function runDoctor (options: DoctorOptions): Promise<DoctorReport> {
  const ctx = doctorContext(options)
  const checks = doctorChecks(options.loaded?.vms.map((vm) => vm.name) ?? []).filter((c) => options.only?.(c.id) ?? true)
  return runChecks(ctx, checks)
}
