// Runs the checks: all at once, each under its own timeout, none able to throw (a check that
// throws or hangs becomes a `fail` line naming what happened).
import { configCheck, dataDirCheck, diskSpaceCheck } from './checks/config.ts'
import { libvirtProblem } from './checks/common.ts'
import {
  disksCheck, domainCheck, firmwareCheck, guestAgentCheck, kvmCheck, libvirtCheck, libvirtGroupsCheck, snapshotCheck
} from './checks/libvirt.ts'
import { apiPortCheck, firewallCheck, guestNetworkCheck } from './checks/network.ts'
import { systemdCheck, viewerCheck } from './checks/systemd.ts'
import { heartbeatsCheck, revertsCheck, watchdogStateCheck } from './checks/watchdog.ts'
import { DEFAULT_CHECK_TIMEOUT_MS, type Check, type CheckLevel, type CheckResult, type DoctorContext } from './types.ts'

/** Every check, in the order they are reported: the host, then each VM, then the service around it. */
export function doctorChecks (vms: readonly string[]): Check[] {
  return [
    configCheck, dataDirCheck, diskSpaceCheck,
    libvirtCheck, libvirtGroupsCheck, kvmCheck,
    ...vms.flatMap((vm) => [
      domainCheck(vm), snapshotCheck(vm), disksCheck(vm), firmwareCheck(vm),
      guestNetworkCheck(vm), guestAgentCheck(vm), heartbeatsCheck(vm), watchdogStateCheck(vm), revertsCheck(vm)
    ]),
    apiPortCheck, firewallCheck, systemdCheck, viewerCheck
  ]
}

/** What `check-config` runs: the config and the libvirt side of each VM. */
export function isCheckConfigId (id: string): boolean {
  return id === 'config' || id === 'libvirt' || id.startsWith('domain:') || id.startsWith('snapshot:')
}

export async function runCheck (ctx: DoctorContext, check: Check): Promise<CheckResult> {
  const ms = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ id: check.id, level: 'fail', message: `${check.id}: no answer within ${ms / 1000} s (the check timed out)` }), ms)
  })
  const run = (async (): Promise<CheckResult> => {
    try {
      const found = await check.run(ctx)
      return { id: check.id, level: found.level, message: found.message, ...(found.fix ? { fix: found.fix } : {}) }
    } catch (err) {
      return { id: check.id, level: 'fail', message: `${check.id}: the check itself failed: ${(err as Error)?.message ?? String(err)}` }
    }
  })()
  try {
    return await Promise.race([run, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface DoctorReport {
  /** False when any check failed. */
  ok: boolean
  counts: Record<CheckLevel, number>
  checks: CheckResult[]
}

/** How long the libvirt connection may take before every libvirt check reports it as unreachable. */
export const LIBVIRT_CONNECT_TIMEOUT_MS = 15_000

export async function runChecks (ctx: DoctorContext, checks: readonly Check[]): Promise<DoctorReport> {
  if (ctx.hypervisor !== null && checks.some((c) => c.id !== 'config')) {
    // Open the connection once, bounded, before the per-check timers start.
    const connecting = libvirtProblem(ctx)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve(`no answer within ${LIBVIRT_CONNECT_TIMEOUT_MS / 1000} s`), LIBVIRT_CONNECT_TIMEOUT_MS) })
    const problem = await Promise.race([connecting, late])
    clearTimeout(timer)
    if (problem !== null) ctx.memo.set('libvirt', Promise.resolve(problem))
  }
  const results = await Promise.all(checks.map((check) => runCheck(ctx, check)))
  const counts: Record<CheckLevel, number> = { ok: 0, warn: 0, fail: 0 }
  for (const r of results) counts[r.level]++
  return { ok: counts.fail === 0, counts, checks: results }
}

/** One line per check (`level id: message`), the fix indented below it. */
export function formatResults (results: readonly CheckResult[]): string {
  return results.map((r) => `${r.level.padEnd(4)} ${r.id}: ${r.message}${r.fix ? `\n     fix: ${r.fix}` : ''}`).join('\n')
}
