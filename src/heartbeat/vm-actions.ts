// The libvirt actions a watchdog carries out for its machine (always inside the VM's action
// queue). Each one reports its outcome as the machine event to feed, so the machine decides
// what follows.
import { AppError } from '../errors.ts'
import { LibvirtError, type Hypervisor } from '../libvirt/index.ts'
import type { Clock, Log } from '../ports/index.ts'
import type { Action, MachineEvent } from './machine.ts'
import type { RevertEvent } from './watchdog-types.ts'

export interface VmActionContext {
  vm: string
  /** vm.snapshot_name: named in errors when resolving the revision itself failed. */
  snapshotName: string
  hypervisor: Hypervisor
  log: Pick<Log, 'info' | 'warn' | 'error'>
  clock: Clock
  resolveSnapshot: () => string | Promise<string>
  onRevert: (event: RevertEvent) => void
}

type RevertAction = Extract<Action, { type: 'revert' }>

export async function revertVm (ctx: VmActionContext, action: RevertAction): Promise<Extract<MachineEvent, { type: 'revert_finished' | 'revert_failed' }>> {
  const base = { vm: ctx.vm, reason: action.reason, source: action.source, escalate: action.escalate, attempt: action.attempt }
  const h = ctx.hypervisor
  let snapshot = ctx.snapshotName
  let callAt = ctx.clock.now()
  let deadlineLagMs: number | null = null
  try {
    if (action.escalate) {
      try {
        await h.destroy(ctx.vm)
      } catch (err) {
        if (!isNotRunning(err)) ctx.log.warn({ err }, 'escalated revert: destroy failed; reverting anyway')
      }
    }
    snapshot = await ctx.resolveSnapshot()
    callAt = ctx.clock.now()
    deadlineLagMs = action.dueAt === null ? null : callAt - action.dueAt
    ctx.onRevert({ ...base, phase: 'start', deadlineLagMs })
    await h.revertToSnapshot(ctx.vm, snapshot)
    await startIfNotRunning(ctx, snapshot)
  } catch (err) {
    const error = describeRevertError(err, ctx.vm, snapshot, h.uri)
    ctx.onRevert({ ...base, phase: 'finish', deadlineLagMs, outcome: 'failed', error })
    // What the failed attempt left: the machine must not take heartbeats for health while the VM is off.
    const after = await h.domainState(ctx.vm).catch(() => null)
    return { type: 'revert_failed', error, vmRunning: after === null ? null : !isStopped(after.state) }
  }
  const durationMs = ctx.clock.now() - callAt
  ctx.onRevert({ ...base, phase: 'finish', deadlineLagMs, outcome: 'succeeded', durationMs })
  return { type: 'revert_finished', durationMs, deadlineLagMs }
}

/**
 * A snapshot taken while the VM was shut off holds no memory state: reverting to it leaves the
 * domain shut off (libvirt's test driver; QEMU starts it because of REVERT_RUNNING). A revert
 * must end with the VM running, so start it here; if it still does not run, the revert failed.
 * Only a VM READ as not running that cannot be started fails the attempt: the revert itself is
 * done, and a retry would revert the exhibit again. When the state cannot be read (libvirt
 * dropped just then), the revert is finished with a warning; the state poll and the
 * vm_not_running rule still catch a VM that is really off.
 */
async function startIfNotRunning (ctx: VmActionContext, snapshot: string): Promise<void> {
  const h = ctx.hypervisor
  const after = await readStateAfterRevert(ctx, snapshot)
  if (after === null || !isStopped(after)) return
  ctx.log.warn({ snapshot, state: after }, 'the VM is not running after the revert (a snapshot without memory state): starting it')
  await h.start(ctx.vm)
  const started = await readStateAfterRevert(ctx, snapshot)
  if (started !== null && isStopped(started)) throw new VmNotStartedError(`the VM is still ${started} after the revert to "${snapshot}" and a start`)
}

/** The VM's state after a successful revert; null (and a warning) when libvirt cannot say. */
async function readStateAfterRevert (ctx: VmActionContext, snapshot: string): Promise<string | null> {
  try {
    return (await ctx.hypervisor.domainState(ctx.vm)).state
  } catch (err) {
    ctx.log.warn({ err, snapshot }, 'the revert succeeded but the VM state cannot be read; taking the revert as finished (the state poll checks the VM)')
    return null
  }
}

class VmNotStartedError extends Error {}

function isStopped (state: string): boolean {
  return state === 'shutoff' || state === 'crashed'
}

/** Never rejects: failures are logged; a VM that is not running is already where it should be. */
export async function destroyVm (ctx: VmActionContext, reason: string): Promise<void> {
  try {
    await ctx.hypervisor.destroy(ctx.vm)
    ctx.log.info({ reason }, 'VM destroyed')
  } catch (err) {
    if (isNotRunning(err)) return
    ctx.log.error({ err, reason }, 'cannot stop the VM')
  }
}

/** Asks the guest OS to shut down. Never rejects. */
export async function shutdownVm (ctx: VmActionContext, reason: string, timeoutMs: number): Promise<void> {
  try {
    await ctx.hypervisor.shutdown(ctx.vm)
    ctx.log.info({ reason, timeoutMs }, 'VM shutdown requested')
  } catch (err) {
    if (isNotRunning(err)) return
    ctx.log.error({ err, reason }, 'cannot shut the VM down')
  }
}

/** After the shutdown timeout: destroys the VM if it still runs. */
export async function destroyIfStillRunning (ctx: VmActionContext, timeoutMs: number): Promise<void> {
  const st = await ctx.hypervisor.domainState(ctx.vm)
  if (st.state === 'shutoff' || st.state === 'crashed') return
  ctx.log.warn({ state: st.state, timeoutMs }, 'the VM did not shut down in time; destroying it')
  await destroyVm(ctx, 'shutdown timeout')
}

/** What libvirt says the VM is, as a machine event; null when nothing can be said (libvirt gone, or a transient state). */
export async function readVmState (ctx: VmActionContext, why: string): Promise<Extract<MachineEvent, { type: 'vm_state' }> | null> {
  try {
    const st = await ctx.hypervisor.domainState(ctx.vm)
    if (st.state === 'nostate') return null
    const running = st.state !== 'shutoff' && st.state !== 'crashed'
    return { type: 'vm_state', running, reason: `${st.state}/${st.reasonName}` }
  } catch (err) {
    if (err instanceof LibvirtError && err.isNoDomain) {
      return { type: 'vm_state', running: false, reason: `domain "${ctx.vm}" is not defined in libvirt` }
    }
    if (!(err instanceof LibvirtError && err.isDisconnected)) ctx.log.warn({ err, why }, 'cannot read the VM state')
    return null
  }
}

function isNotRunning (err: unknown): boolean {
  return err instanceof LibvirtError && err.codeName === 'VIR_ERR_OPERATION_INVALID'
}

function describeRevertError (err: unknown, vm: string, snapshot: string, uri: string): string {
  // Either the resolver (snapshot/) found no revision of it, or libvirt no snapshot of that name.
  if ((err instanceof AppError && err.code === 'SNAPSHOT_NOT_FOUND') || (err instanceof LibvirtError && err.isNoSnapshot)) {
    return `snapshot "${snapshot}" of VM "${vm}" does not exist: create it (POST /api/v1/snapshot/create) while the exhibit is in its ready state`
  }
  if (err instanceof LibvirtError) {
    if (err.isNoDomain) return `VM "${vm}" is not defined in libvirt (${uri})`
    if (err.isDisconnected) return `libvirt is not reachable (${uri}): ${err.message}`
    return `libvirt refused the revert (${err.codeName}): ${err.message}`
  }
  if (err instanceof VmNotStartedError) return `revert failed: ${err.message}`
  return `revert failed: ${err instanceof Error ? err.message : String(err)}`
}
