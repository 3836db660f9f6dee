// libvirt, libvirt_groups, kvm, domain, snapshot, disks, firmware, guest_agent: each in an ok and
// a failing form, on libvirt's test driver (test:///default or a custom test-driver file).
import t from 'tap'
import { join } from 'node:path'
import {
  disksCheck, domainCheck, firmwareCheck, guestAgentCheck, kvmCheck, libvirtCheck, libvirtGroupsCheck, snapshotCheck
} from '../../src/doctor/checks/libvirt.ts'
import { doctorContext, runCheck } from '../../src/doctor/index.ts'
import { snapshotXml } from '../../src/libvirt/index.ts'
import { QCOW2_DISK, RAW_DISK, USER_NET, override, scratch, testDomain } from './helpers.ts'

t.test('libvirt: reachable (ok) and not (fail)', async (t) => {
  const good = scratch(t)
  const r = await good.run(libvirtCheck)
  t.equal(r.level, 'ok')
  t.match(r.message, /libvirt reachable at test:\/\/\/default as user \S+ \(uid \d+\), library \d+\.\d+\.\d+/)

  const bad = scratch(t, { uri: 'test:///nonexistent/node.xml' })
  const f = await bad.run(libvirtCheck)
  t.equal(f.level, 'fail')
  t.match(f.message, /not reachable at test:\/\/\/nonexistent\/node\.xml/)
  t.match(f.fix, /virsh -c 'test:\/\/\/nonexistent\/node\.xml' version/)
  // The checks that need libvirt say so instead of failing on their own.
  t.match(await bad.run(domainCheck('test')), { level: 'warn', message: /not checked: libvirt is not reachable/ })
})

t.test('libvirt_groups: qemu:///system as a user in (ok) and out of (fail) group libvirt', async (t) => {
  const user = () => ({ username: 'kiosk', uid: 1000, gid: 1000 })
  // The URI is not dialled by this check unless the user lacks the group; a socket that does not
  // exist makes "libvirt refuses" real without touching a daemon.
  const uri = `qemu+unix:///system?socket=${join(t.testdirName, 'no-such.sock')}`
  const member = scratch(t, { uri, host: { user, processGroups: () => [1000, 106] } })
  const { writeFileSync } = await import('node:fs')
  writeFileSync(member.host.paths.groupFile, 'libvirt:x:106:kiosk\nkvm:x:107:\nkiosk:x:1000:\n')
  t.match(await member.run(libvirtGroupsCheck), { level: 'ok', message: /user kiosk is in group libvirt; kvm: not a member/ })

  const outsider = scratch(t, { uri, host: { user, processGroups: () => [1000] } })
  const f = await outsider.run(libvirtGroupsCheck)
  t.equal(f.level, 'fail')
  t.match(f.message, /user kiosk is not in group libvirt/)
  t.equal(f.fix, 'sudo usermod -aG libvirt kiosk, then log in again or restart the service')

  // Listed in /etc/group but not yet in this process (added since login).
  const stale = scratch(t, { uri, host: { user, processGroups: () => [1000] } })
  writeFileSync(stale.host.paths.groupFile, 'libvirt:x:106:kiosk\n')
  t.match(await stale.run(libvirtGroupsCheck), { level: 'warn', message: /listed in group libvirt but this process does not have it yet/ })

  t.match(await scratch(t).run(libvirtGroupsCheck), { level: 'ok', message: /no group needed|running as root/ })
})

t.test('kvm: usable (ok) and missing (warn: TCG is slow)', async (t) => {
  const s = scratch(t)
  t.match(await s.run(kvmCheck), { level: 'ok', message: /readable and writable/ })
  const none = scratch(t, { host: { paths: { kvm: '/nonexistent/kvm' } } })
  const w = await none.run(kvmCheck)
  t.equal(w.level, 'warn')
  t.match(w.message, /\/nonexistent\/kvm is not usable by \S+ \(ENOENT\): guests run under TCG, which is slow/)
})

t.test('domain: running (ok), shut off (warn), missing (fail listing what libvirt has)', async (t) => {
  const s = scratch(t)
  t.match(await s.run(domainCheck('test')), { level: 'ok', message: 'domain "test" exists and is running' })
  await s.hypervisor.destroy('test')
  t.match(await s.run(domainCheck('test')), { level: 'warn', message: /is shutoff/, fix: /virsh start test/ })

  const m = scratch(t, { config: { vm_name: 'kiosk' } })
  const f = await m.run(domainCheck('kiosk'))
  t.equal(f.level, 'fail')
  t.match(f.message, 'domain "kiosk" does not exist (libvirt has: test)')
  t.match(await m.run(snapshotCheck('kiosk')), { level: 'warn', message: /not checked: domain "kiosk" does not exist/ })
})

t.test('snapshot: with memory (ok), missing (warn on the test driver, fail elsewhere), without memory (fail)', async (t) => {
  const s = scratch(t, { config: { vm_name: 'kiosk' }, domains: [testDomain('kiosk', QCOW2_DISK + USER_NET)] })
  // The service creates a missing snapshot at start on the test driver (vms plugin): a warn here.
  t.match(await s.run(snapshotCheck('kiosk')), { level: 'warn', message: /does not exist here; the service creates it at start/ })

  await s.hypervisor.createSnapshot('kiosk', snapshotXml('ready'))
  const good = await s.run(snapshotCheck('kiosk'))
  t.equal(good.level, 'ok')
  t.match(good.message, /snapshot "ready" of "kiosk" exists and holds memory state \(taken \d{4}-/)

  await s.hypervisor.deleteSnapshot('kiosk', 'ready')
  await s.hypervisor.destroy('kiosk')
  await s.hypervisor.createSnapshot('kiosk', snapshotXml('ready'))
  const cold = await s.run(snapshotCheck('kiosk'))
  t.equal(cold.level, 'fail')
  t.match(cold.message, /holds no memory state \(taken while shutoff\)/)

  // With a URI nothing creates snapshots for, a missing one is a fail. The config says
  // qemu:///system; the calls still go to the real test driver.
  const strict = scratch(t)
  const loaded = { ...strict.loaded, config: { ...strict.loaded.config, libvirt_uri: 'qemu:///system' } }
  const r = await runCheck(doctorContext({ configFile: null, loaded, hypervisor: strict.hypervisor, host: strict.host }), snapshotCheck('test'))
  t.equal(r.level, 'fail')
  t.match(r.message, 'snapshot "ready" of "test" does not exist: nothing to revert to')
  t.match(r.fix, /virsh snapshot-create-as test ready/)
})

t.test('disks: qcow2 (ok), raw (fail), format not stated (warn), none (fail)', async (t) => {
  const s = scratch(t, {
    config: { vm_name: 'good', vms: [{ name: 'raw' }, { name: 'diskless' }] },
    domains: [
      testDomain('good', QCOW2_DISK + "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/install.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>"),
      testDomain('raw', RAW_DISK),
      testDomain('diskless', USER_NET)
    ]
  })
  t.match(await s.run(disksCheck('good')), { level: 'ok', message: 'every writable disk of "good" is qcow2: vda (qcow2, /guest/kiosk.qcow2)' })
  const raw = await s.run(disksCheck('raw'))
  t.equal(raw.level, 'fail')
  t.match(raw.message, 'disk vda (raw, /guest/kiosk.img) of "raw" is not qcow2')
  t.match(raw.fix, /qemu-img convert -O qcow2/)
  t.match(await s.run(disksCheck('diskless')), { level: 'fail', message: /no writable disk/ })
  const unstated = await scratch(t).run(disksCheck('test'))
  t.match(unstated, { level: 'warn', message: /vda \(format not stated, \/guest\/diskimage1\).*test driver/ })
})

t.test('firmware: BIOS (ok), pflash without a snapshot (warn), pflash with one (ok)', async (t) => {
  const pflash = "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
  const s = scratch(t, { config: { vm_name: 'bios', vms: [{ name: 'uefi' }] }, domains: [testDomain('bios', QCOW2_DISK), testDomain('uefi', QCOW2_DISK, pflash)] })
  t.match(await s.run(firmwareCheck('bios')), { level: 'ok', message: /BIOS firmware/ })
  const w = await s.run(firmwareCheck('uefi'))
  t.equal(w.level, 'warn')
  t.match(w.message, /boots UEFI from pflash \(\/usr\/share\/OVMF\/OVMF_CODE\.fd\): many libvirt versions/)
  await s.hypervisor.createSnapshot('uefi', snapshotXml('ready'))
  const s2 = await s.run(firmwareCheck('uefi'))
  t.match(s2, { level: 'ok', message: /its snapshot exists/ })
})

t.test('guest_agent: not supported on the test driver (warn); answering (ok)', async (t) => {
  const s = scratch(t)
  const w = await s.run(guestAgentCheck('test'))
  t.equal(w.level, 'warn')
  t.match(w.message, /does not answer guest-ping: .*not supported.*no org\.qemu\.guest_agent\.0 channel/)

  // The test driver has no agent; a real one is only in the e2e suite. This stand-in changes
  // agentCommand alone and records what it was asked.
  const asked: string[] = []
  const withAgent = override(s.hypervisor, { agentCommand: async (_d: string, command: string) => { asked.push(command); return '{"return":{}}' } })
  const r = await runCheck(doctorContext({ configFile: null, loaded: s.loaded, hypervisor: withAgent, host: s.host }), guestAgentCheck('test'))
  t.match(r, { level: 'ok', message: 'guest agent of "test" answers guest-ping' })
  t.same(asked, ['{"execute":"guest-ping"}'])
})
