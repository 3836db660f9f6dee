// SIGHUP: what a new config file changes in a running service. Only settings that are read at the
// moment they are used can change in place; the rest (ports, VMs, the data directory, the watchdog
// timings held by running timers) need a restart, and the reload names them in a warning.
import type { LoadedConfig } from './load.ts'

/** Top-level keys applied in place by a reload. */
export const RELOADABLE_KEYS = ['log_level', 'maintenance_minutes'] as const
export type ReloadableKey = typeof RELOADABLE_KEYS[number]

export interface ReloadPlan {
  /** Changed keys that take effect now. */
  apply: ReloadableKey[]
  /** Changed keys that take effect only after a restart (config keys; `vms` for any VM's settings). */
  restart: string[]
}

/** Compares the running config with a newly loaded one, key by key (values never leave this function). */
export function planReload (current: LoadedConfig, next: LoadedConfig): ReloadPlan {
  const plan: ReloadPlan = { apply: [], restart: [] }
  const a = current.config as Record<string, unknown>
  const b = next.config as Record<string, unknown>
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (JSON.stringify(a[key]) === JSON.stringify(b[key])) continue
    if ((RELOADABLE_KEYS as readonly string[]).includes(key)) plan.apply.push(key as ReloadableKey)
    else plan.restart.push(key)
  }
  return plan
}

/** Writes the reloadable values of `next` into the running config object (routes read them per request). */
export function applyReload (current: LoadedConfig, next: LoadedConfig, plan: ReloadPlan): void {
  const target = current.config as Record<string, unknown>
  for (const key of plan.apply) target[key] = next.config[key]
}
