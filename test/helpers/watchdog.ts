// A Watchdog wired the way src/plugins/vms.ts wires it: the revert target resolved by the real
// SnapshotService (newest revision of the configured snapshot) and the guest revert interval's
// default. Tests give the ports (clock, timers, log, persistence, audit).
import type { VmConfig } from '../../src/config/schema.ts'
import { Watchdog, type WatchdogOptions } from '../../src/heartbeat/watchdog.ts'
import type { Hypervisor } from '../../src/libvirt/index.ts'
import { GUEST_REVERT_MIN_INTERVAL_DEFAULT } from '../../src/limits.ts'
import { SnapshotService } from '../../src/snapshot/index.ts'

export type TestWatchdogOptions = Omit<WatchdogOptions, 'resolveSnapshot' | 'guestRevertMinInterval'> & Partial<Pick<WatchdogOptions, 'resolveSnapshot' | 'guestRevertMinInterval'>>

export function productionResolver (hypervisor: Hypervisor, vm: VmConfig): () => Promise<string> {
  const snapshots = new SnapshotService({ hypervisor, keepRevisions: vm.keep_revisions })
  return () => snapshots.resolveRevertTarget(vm.name, vm.snapshot_name)
}

export function newWatchdog (options: TestWatchdogOptions): Watchdog {
  return new Watchdog({
    guestRevertMinInterval: GUEST_REVERT_MIN_INTERVAL_DEFAULT,
    resolveSnapshot: productionResolver(options.hypervisor, options.vm),
    ...options
  })
}
