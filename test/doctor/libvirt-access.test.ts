// issue 14, failure 5: on Debian 12 qemu:///system's socket is 0666 and polkit admits members of
// group libvirt as /etc/group lists them. A service that has the group only from
// SupplementaryGroups= is refused; the doctor must say so rather than blame the group alone.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { libvirtGroupsCheck } from '../../src/doctor/checks/libvirt.ts'
import { scratch } from './helpers.ts'

t.test('libvirt_groups: the group only in the process (SupplementaryGroups=) is named as not enough for polkit', async (t) => {
  const user = () => ({ username: 'kiosk-vm-watchdog', uid: 998, gid: 998 })
  const uri = `qemu+unix:///system?socket=${join(t.testdirName, 'no-such.sock')}`
  const s = scratch(t, { uri, host: { user, processGroups: () => [998, 106] } })
  writeFileSync(s.host.paths.groupFile, 'libvirt:x:106:\nkvm:x:107:\nkiosk-vm-watchdog:x:998:\n')
  const f = await s.run(libvirtGroupsCheck)
  t.equal(f.level, 'fail')
  t.match(f.message, /user kiosk-vm-watchdog is not in group libvirt: .* refuses it; this process has the group \(e\.g\. SupplementaryGroups=\), but polkit only counts membership listed in \/etc\/group/)
  t.equal(f.fix, 'sudo usermod -aG libvirt kiosk-vm-watchdog, then log in again or restart the service')
})
