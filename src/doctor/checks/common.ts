// Helpers the checks share: a skipped check's result, per-run memoisation, the libvirt
// connection every libvirt check waits for.
import { stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { VmConfig } from '../../config/schema.ts'
import type { CheckResult, DoctorContext } from '../types.ts'

export type Finding = Omit<CheckResult, 'id'>

/** A check that could not look because something it needs is missing (reported elsewhere). */
export function notChecked (reason: string): Finding {
  return { level: 'warn', message: `not checked: ${reason}` }
}

export function memo<T> (ctx: DoctorContext, key: string, fn: () => Promise<T>): Promise<T> {
  let p = ctx.memo.get(key) as Promise<T> | undefined
  if (p === undefined) {
    p = fn()
    p.catch(() => {}) // rejections are handled by each awaiting check
    ctx.memo.set(key, p)
  }
  return p
}

/** Opens (or confirms) the libvirt connection once per run: null when connected, else why not. */
export function libvirtProblem (ctx: DoctorContext): Promise<string | null> {
  return memo(ctx, 'libvirt', async () => {
    const h = ctx.hypervisor
    if (h === null) return 'no libvirt connection was opened (the config is not valid)'
    if (h.connected) return null
    try {
      await h.connect()
      return null
    } catch (err) {
      return (err as Error).message
    }
  })
}

/** The VM config, or why a per-VM check cannot run. */
export function vmOf (ctx: DoctorContext, name: string): VmConfig | null {
  return ctx.loaded?.vms.find((vm) => vm.name === name) ?? null
}

export function domainXml (ctx: DoctorContext, vm: string): Promise<string> {
  return memo(ctx, `xml:${vm}`, () => ctx.hypervisor!.domainXml(vm))
}

/** data_dir as the service uses it (loadConfig made it absolute, relative to the config file). */
export function dataDirOf (ctx: DoctorContext): string | null {
  return ctx.loaded ? resolve(ctx.loaded.config.data_dir) : null
}

/** The path itself when it exists, else its nearest existing ancestor. */
export async function nearestExisting (path: string): Promise<{ path: string, isDirectory: boolean, exists: boolean }> {
  let current = path
  for (;;) {
    try {
      const s = await stat(current)
      return { path: current, isDirectory: s.isDirectory(), exists: current === path }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const parent = dirname(current)
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === current) throw err
      current = parent
    }
  }
}

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

export function errorText (err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return e?.code ? `${e.code}: ${e.message}` : String((err as Error)?.message ?? err)
}

/** Why a per-VM check has no VM config to work with. */
export function noVm (ctx: DoctorContext, vm: string): Finding {
  return notChecked(ctx.loaded === null ? 'the config is not valid' : `"${vm}" is not a VM in the config`)
}
