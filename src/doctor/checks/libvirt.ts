// libvirt, libvirt_groups, kvm, and per VM: domain, snapshot, disks, firmware, guest_agent.
import { access, constants, readFile } from 'node:fs/promises'
import { SnapshotService, type SnapshotCheck } from '../../snapshot/index.ts'
import { parseDomainXml } from '../domain-xml.ts'
import type { Check, DoctorContext } from '../types.ts'
import { domainXml, errorText, libvirtProblem, memo, noVm, notChecked, vmOf, type Finding } from './common.ts'

export const libvirtCheck: Check = {
  id: 'libvirt',
  timeoutMs: 15_000,
  async run (ctx) {
    if (ctx.loaded === null || ctx.hypervisor === null) return notChecked('the config is not valid')
    const uri = ctx.loaded.config.libvirt_uri
    const user = ctx.host.user()
    const problem = await libvirtProblem(ctx)
    if (problem !== null) {
      return {
        level: 'fail',
        message: `libvirt not reachable at ${uri} as user ${user.username}: ${problem}`,
        fix: uri.startsWith('qemu:///system')
          ? `sudo systemctl start libvirtd (or virtqemud.socket); virsh -c ${uri} version must answer as ${user.username} (see libvirt_groups), or fix libvirt_uri`
          : `check libvirt_uri (now ${uri}); virsh -c '${uri}' version must answer`
      }
    }
    return { level: 'ok', message: `libvirt reachable at ${uri} as user ${user.username} (uid ${user.uid}), library ${ctx.hypervisor.libraryVersion()}` }
  }
}

interface GroupEntry { name: string, gid: number, members: string[] }

async function readGroups (path: string): Promise<GroupEntry[]> {
  const text = await readFile(path, 'utf8')
  return text.split('\n').flatMap((line) => {
    const [name, , gid, members] = line.split(':')
    if (!name || gid === undefined || !/^\d+$/.test(gid)) return []
    return [{ name, gid: Number(gid), members: (members ?? '').split(',').map((m) => m.trim()).filter(Boolean) }]
  })
}

/** qemu:///system and its transport spellings (qemu+unix:///system...). */
export function isSystemUri (uri: string): boolean {
  return /^qemu(\+unix)?:\/\/\/system(\?|$)/.test(uri)
}

export const libvirtGroupsCheck: Check = {
  id: 'libvirt_groups',
  async run (ctx) {
    if (ctx.loaded === null) return notChecked('the config is not valid')
    const uri = ctx.loaded.config.libvirt_uri
    const user = ctx.host.user()
    if (user.uid === 0) return { level: 'ok', message: `running as root: no group needed for ${uri}` }
    const wanted = isSystemUri(uri) ? 'libvirt' : uri.startsWith('qemu:///session') ? 'kvm' : null
    if (wanted === null) return { level: 'ok', message: `no group needed for ${uri}` }
    const groups = await readGroups(ctx.host.paths.groupFile)
    const has = (name: string) => {
      const g = groups.find((x) => x.name === name)
      if (!g) return { listed: false, effective: false, exists: false }
      return { exists: true, listed: g.gid === user.gid || g.members.includes(user.username), effective: ctx.host.processGroups().includes(g.gid) }
    }
    const need = has(wanted)
    const kvm = has('kvm')
    const extra = wanted === 'libvirt' ? `; kvm: ${kvm.listed ? 'member' : 'not a member (qemu:///system runs QEMU as its own user, so not needed)'}` : ''
    const fix = `sudo usermod -aG ${wanted} ${user.username}, then log in again or restart the service`
    if (!need.exists) return { level: 'fail', message: `group ${wanted} does not exist on this host: is libvirt installed? (${ctx.host.paths.groupFile})`, fix: 'sudo apt install libvirt-daemon-system' }
    if (need.listed && need.effective) return { level: 'ok', message: `user ${user.username} is in group ${wanted}${extra}` }
    const reachable = (await libvirtProblem(ctx)) === null
    if (need.listed) {
      return { level: reachable ? 'ok' : 'warn', message: `user ${user.username} is listed in group ${wanted} but this process does not have it yet (added since login)${extra}`, fix: 'log in again or restart the service' }
    }
    // Debian 12: /run/libvirt/libvirt-sock is 0666 and polkit decides (60-libvirt.rules admits
    // members of group libvirt as /etc/group lists them); a group the process only got from
    // SupplementaryGroups= or newgrp does not count there.
    const onlyInProcess = wanted === 'libvirt' && need.effective
      ? '; this process has the group (e.g. SupplementaryGroups=), but polkit only counts membership listed in /etc/group'
      : ''
    return {
      level: reachable ? 'warn' : 'fail',
      message: `user ${user.username} is not in group ${wanted}${reachable ? ' (libvirt answers anyway: polkit or an ACL allows it)' : `: ${uri} refuses it`}${onlyInProcess}${extra}`,
      fix
    }
  }
}

export const kvmCheck: Check = {
  id: 'kvm',
  async run (ctx) {
    const path = ctx.host.paths.kvm
    const user = ctx.host.user().username
    try {
      await access(path, constants.R_OK | constants.W_OK)
    } catch (err) {
      return {
        level: 'warn',
        message: `${path} is not usable by ${user} (${(err as NodeJS.ErrnoException).code ?? errorText(err)}): guests run under TCG, which is slow`,
        fix: `enable virtualisation (VT-x/AMD-V) in the firmware setup and sudo usermod -aG kvm ${user}; <domain type='qemu'> works without KVM`
      }
    }
    // Accessible is not the same as able to boot a guest (nested or PVM hosts): the domain type
    // decides, and KVM stays an explicit choice in the domain XML.
    return { level: 'ok', message: `${path} is readable and writable by ${user}; <domain type='kvm'> can use it (whether guests boot under KVM depends on the host: nested or PVM hosts may not)` }
  }
}

/** Per-VM preamble: the libvirt connection and the domain must be there. */
async function domainGate (ctx: DoctorContext, vm: string): Promise<Finding | null> {
  if (vmOf(ctx, vm) === null) return noVm(ctx, vm)
  const problem = await libvirtProblem(ctx)
  if (problem !== null) return notChecked('libvirt is not reachable (see libvirt)')
  const exists = await memo(ctx, `exists:${vm}`, () => ctx.hypervisor!.domainExists(vm))
  if (!exists) return notChecked(`domain "${vm}" does not exist (see domain:${vm})`)
  return null
}

/** What a revert to the VM's snapshot would use (the newest revision of snapshot_name). */
function snapshotOf (ctx: DoctorContext, vm: string): Promise<SnapshotCheck> {
  const config = vmOf(ctx, vm)!
  return memo(ctx, `snapshot:${vm}`, () => new SnapshotService({ hypervisor: ctx.hypervisor!, keepRevisions: config.keep_revisions }).check(vm, config.snapshot_name))
}

export function domainCheck (vm: string): Check {
  return {
    id: `domain:${vm}`,
    async run (ctx) {
      if (vmOf(ctx, vm) === null) return noVm(ctx, vm)
      if (await libvirtProblem(ctx) !== null) return notChecked('libvirt is not reachable (see libvirt)')
      const h = ctx.hypervisor!
      if (!await memo(ctx, `exists:${vm}`, () => h.domainExists(vm))) {
        const known = await h.listDomains()
        return {
          level: 'fail',
          message: `domain "${vm}" does not exist (libvirt has: ${known.join(', ') || 'none'})`,
          fix: `set vm_name (or vms[].name) to one of those, or define the VM: virsh define ${vm}.xml (docs/install.md)`
        }
      }
      const state = await h.domainState(vm)
      if (state.state === 'running') return { level: 'ok', message: `domain "${vm}" exists and is running (${state.reasonName})` }
      return {
        level: 'warn',
        message: `domain "${vm}" exists but is ${state.state} (${state.reasonName}); the watchdog reverts it to its snapshot when auto-revert is on`,
        fix: `virsh start ${vm}, or curl -X POST http://127.0.0.1:${ctx.loaded!.config.api_port}/api/v1/vm/start`
      }
    }
  }
}

export function snapshotCheck (vm: string): Check {
  return {
    id: `snapshot:${vm}`,
    async run (ctx) {
      const gate = await domainGate(ctx, vm)
      if (gate) return gate
      const name = vmOf(ctx, vm)!.snapshot_name
      const port = ctx.loaded!.config.api_port
      const snap = await snapshotOf(ctx, vm)
      const config = ctx.loaded!.config
      if (!snap.exists && (config.create_snapshot_if_missing || config.libvirt_uri.startsWith('test:'))) {
        // The same rule as the service's vms plugin; the test driver forgets snapshots per connection.
        return {
          level: 'warn',
          message: `snapshot "${name}" of "${vm}" does not exist here; the service creates it at start from the VM as it is then (create_snapshot_if_missing${config.libvirt_uri.startsWith('test:') ? ', or libvirt\'s test driver' : ''})`,
          fix: `take it yourself once the artwork runs and has settled: virsh snapshot-create-as ${vm} ${name}`
        }
      }
      if (!snap.exists) {
        return {
          level: 'fail',
          message: `snapshot "${name}" of "${vm}" does not exist: nothing to revert to`,
          fix: `start the VM, wait until the artwork runs and settles, then: virsh snapshot-create-as ${vm} ${name} (or curl -X POST http://127.0.0.1:${port}/api/v1/snapshot/create)`
        }
      }
      const which = snap.target === name ? `"${name}"` : `"${name}" (active version ${snap.target})`
      if (!snap.hasMemory) {
        return {
          level: 'fail',
          message: `snapshot ${which} of "${vm}" holds no memory state (taken while ${snap.state}): a revert would boot the VM instead of resuming the artwork`,
          fix: `take it again while the VM runs and the artwork has settled: curl -X POST http://127.0.0.1:${port}/api/v1/snapshot/create (or virsh snapshot-create-as ${vm} ${name} after virsh snapshot-delete ${vm} ${snap.target})`
        }
      }
      const revisions = snap.revisions > 0 ? `, ${snap.revisions} older revision${snap.revisions > 1 ? 's' : ''} to roll back to` : ''
      if (snap.staleLiteral) {
        // EVC's (or a technician's) plain `ready` next to newer revisions: a manual revert by that name goes back in time.
        return {
          level: 'warn',
          message: `snapshot ${which} of "${vm}" exists and holds memory state, but an older snapshot named exactly "${name}" exists too: "virsh snapshot-revert ${vm} ${name}" would go back to that older state, not to ${snap.target ?? name}`,
          fix: `revert through the service (curl -X POST http://127.0.0.1:${port}/api/v1/revert), or by hand to the current one: virsh snapshot-revert ${vm} ${snap.target ?? name} --running; once sure the old one is not needed: curl -X DELETE http://127.0.0.1:${port}/api/v1/snapshot/${name}`
        }
      }
      return { level: 'ok', message: `snapshot ${which} of "${vm}" exists and holds memory state (taken ${new Date((snap.creationTime ?? 0) * 1000).toISOString()}${revisions})` }
    }
  }
}

export function disksCheck (vm: string): Check {
  return {
    id: `disks:${vm}`,
    async run (ctx) {
      const gate = await domainGate(ctx, vm)
      if (gate) return gate
      const facts = parseDomainXml(await domainXml(ctx, vm))
      // Read-only disks (install CDs) are left out of internal snapshots.
      const writable = facts.disks.filter((d) => !d.readonly && d.device !== 'cdrom' && d.device !== 'floppy')
      const describe = (d: typeof writable[number]) => `${d.target ?? '?'} (${d.format ?? 'format not stated'}${d.source ? `, ${d.source}` : ''})`
      const notQcow2 = writable.filter((d) => d.format !== null && d.format !== 'qcow2')
      const unstated = writable.filter((d) => d.format === null)
      const convert = `virsh shutdown ${vm}; qemu-img convert -O qcow2 DISK DISK.qcow2; virsh edit ${vm}: <driver name='qemu' type='qcow2'/> and the new <source file=…/>`
      if (writable.length === 0) {
        return { level: 'fail', message: `domain "${vm}" has no writable disk: an internal snapshot with memory state needs a qcow2 disk to live in`, fix: `virsh attach-disk ${vm} /var/lib/libvirt/images/${vm}-state.qcow2 vdb --subdriver qcow2 --persistent (qemu-img create -f qcow2 … 16M first)` }
      }
      if (notQcow2.length > 0) {
        return { level: 'fail', message: `disk${notQcow2.length > 1 ? 's' : ''} ${notQcow2.map(describe).join(', ')} of "${vm}" ${notQcow2.length > 1 ? 'are' : 'is'} not qcow2: internal snapshots need every writable disk in qcow2`, fix: convert }
      }
      if (unstated.length > 0) {
        const testDriver = facts.type === 'test' ? ' (libvirt\'s test driver: formats do not matter there)' : ''
        return { level: 'warn', message: `disk${unstated.length > 1 ? 's' : ''} ${unstated.map(describe).join(', ')} of "${vm}" state no format; QEMU treats them as raw, which internal snapshots refuse${testDriver}`, fix: convert }
      }
      return { level: 'ok', message: `every writable disk of "${vm}" is qcow2: ${writable.map(describe).join(', ')}` }
    }
  }
}

export function firmwareCheck (vm: string): Check {
  return {
    id: `firmware:${vm}`,
    async run (ctx) {
      const gate = await domainGate(ctx, vm)
      if (gate) return gate
      const facts = parseDomainXml(await domainXml(ctx, vm))
      if (!facts.pflash) return { level: 'ok', message: `domain "${vm}" boots BIOS firmware (no pflash): internal snapshots are allowed` }
      const snap = await snapshotOf(ctx, vm)
      const loader = facts.loaderPath ? ` (${facts.loaderPath})` : ''
      if (snap.exists && snap.hasMemory) {
        return { level: 'ok', message: `domain "${vm}" boots UEFI from pflash${loader}; its snapshot exists, so this libvirt (${ctx.hypervisor!.libraryVersion()}) accepted an internal snapshot of it` }
      }
      return {
        level: 'warn',
        message: `domain "${vm}" boots UEFI from pflash${loader}: many libvirt versions (Debian 12's 9.0 among them) refuse internal snapshots of such a VM ("internal snapshots of a VM with pflash based firmware are not supported"); libvirt here: ${ctx.hypervisor!.libraryVersion()}`,
        fix: `try virsh snapshot-create-as ${vm} test-snapshot; if refused, recreate the VM with BIOS firmware (virt-install --boot bios …)`
      }
    }
  }
}

export const GUEST_PING = '{"execute":"guest-ping"}'

export function guestAgentCheck (vm: string): Check {
  return {
    id: `guest_agent:${vm}`,
    timeoutMs: 8000,
    async run (ctx) {
      const gate = await domainGate(ctx, vm)
      if (gate) return gate
      const h = ctx.hypervisor!
      const facts = parseDomainXml(await domainXml(ctx, vm))
      const channel = facts.hasAgentChannel ? '' : '; the domain XML declares no org.qemu.guest_agent.0 channel'
      const fix = `optional: install qemu-guest-agent in the guest and add <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel> (virsh edit ${vm})`
      try {
        await h.agentCommand(vm, GUEST_PING, 3)
      } catch (err) {
        return { level: 'warn', message: `guest agent of "${vm}" does not answer guest-ping: ${(err as Error).message}${channel}`, fix }
      }
      return { level: 'ok', message: `guest agent of "${vm}" answers guest-ping` }
    }
  }
}
