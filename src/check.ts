// `check-config`: validates the libvirt side of a loaded config (the config itself is already
// valid when we get here) and says what is wrong in terms a technician can act on.
import type { LoadedConfig } from './config/load.ts'
import type { Hypervisor } from './libvirt/index.ts'

export type CheckLevel = 'ok' | 'warn' | 'fail'
export interface CheckResult {
  id: string
  level: CheckLevel
  message: string
  /** What to do about it: a command to run or a config key to change. */
  fix?: string
}

export async function checkLibvirt (loaded: LoadedConfig, hypervisor: Hypervisor): Promise<CheckResult[]> {
  const results: CheckResult[] = []
  const { config } = loaded
  try {
    await hypervisor.connect()
    results.push({ id: 'libvirt', level: 'ok', message: `libvirt reachable at ${config.libvirt_uri} (library ${hypervisor.libraryVersion()})` })
  } catch (err) {
    results.push({
      id: 'libvirt',
      level: 'fail',
      message: `libvirt not reachable at ${config.libvirt_uri}: ${(err as Error).message}`,
      fix: 'systemctl start libvirtd (or virtqemud), check libvirt_uri, and that this user is in the libvirt group'
    })
    return results
  }
  for (const vm of loaded.vms) {
    if (!await hypervisor.domainExists(vm.name)) {
      const known = await hypervisor.listDomains()
      results.push({ id: `domain:${vm.name}`, level: 'fail', message: `domain "${vm.name}" does not exist (libvirt has: ${known.join(', ') || 'none'})`, fix: 'set vm_name to one of those, or define the VM: virsh define VM.xml' })
      continue
    }
    const state = await hypervisor.domainState(vm.name)
    results.push({ id: `domain:${vm.name}`, level: 'ok', message: `domain "${vm.name}" exists (${state.state}, ${state.reasonName})` })
    const snap = (await hypervisor.listSnapshots(vm.name)).find((s) => s.name === vm.snapshot_name)
    if (!snap) {
      results.push({ id: `snapshot:${vm.name}`, level: 'fail', message: `snapshot "${vm.snapshot_name}" of "${vm.name}" does not exist`, fix: `start the VM, wait until the artwork runs, then: virsh snapshot-create-as ${vm.name} ${vm.snapshot_name} (or curl -X POST http://127.0.0.1:${config.api_port}/api/v1/snapshot/create)` })
    } else if (!snap.hasMemory) {
      results.push({ id: `snapshot:${vm.name}`, level: 'fail', message: `snapshot "${vm.snapshot_name}" holds no memory state (taken while ${snap.state}): a revert would leave the VM off`, fix: `take it again while the VM runs: virsh snapshot-delete ${vm.name} ${vm.snapshot_name} && virsh snapshot-create-as ${vm.name} ${vm.snapshot_name}` })
    } else {
      results.push({ id: `snapshot:${vm.name}`, level: 'ok', message: `snapshot "${vm.snapshot_name}" exists and holds memory state (taken ${new Date(snap.creationTime * 1000).toISOString()})` })
    }
  }
  return results
}

export function formatResults (results: CheckResult[]): string {
  return results.map((r) => `${r.level.padEnd(4)} ${r.message}${r.fix ? `\n     fix: ${r.fix}` : ''}`).join('\n')
}
