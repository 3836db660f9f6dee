// docs/install.md and docs/migration.md say what a Debian 12 kiosk and an EVC migration need:
// the packages (X server, autologin, xset, curl, jq), `-c qemu:///system` on every virsh line,
// virt-install flags that Debian 12's virtinst has (run with --print-xml on libvirt's test driver
// when virt-install is installed), the EVC unit's Environment= lines, the libvirt URI EVC really
// used, and the way back.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { scratchDir } from './helpers/scratch.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const install = readFileSync(join(ROOT, 'docs/install.md'), 'utf8')
const migration = readFileSync(join(ROOT, 'docs/migration.md'), 'utf8')

/** The shell commands of a markdown text: code blocks and inline code, continuation lines joined. */
function commands (text: string): string[] {
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, ' '))
  const inline = [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!)
  return [...blocks.flatMap((b) => b.split('\n')), ...inline].map((l) => l.trim()).filter((l) => l.length > 0)
}

t.test('install.md: the kiosk packages and their setup', async (t) => {
  const apt = commands(install).find((c) => /apt install libvirt-daemon-system/.test(c))
  t.ok(apt, 'one apt install line')
  for (const pkg of ['xserver-xorg', 'lightdm', 'openbox', 'unclutter', 'x11-xserver-utils', 'curl', 'jq', 'virt-viewer', 'virtinst']) {
    t.match(apt, new RegExp(`\\s${pkg}(\\s|$)`), `installs ${pkg}`)
  }
  t.match(install, /autologin-user=kiosk/, 'lightdm autologin for the kiosk user')
  t.match(install, /autologin-session=openbox/, 'into the Openbox session')
  t.match(install, /adduser [^\n]*kiosk/, 'creates the kiosk user')
})

t.test('install.md: every virsh and virt-install line names qemu:///system', async (t) => {
  const lines = commands(install).flatMap((c) => c.split(/&&|;|\|/)).map((c) => c.trim())
  const virsh = lines.filter((c) => /(^|\s)virsh\s/.test(c))
  t.ok(virsh.length >= 5, `${virsh.length} virsh commands`)
  for (const c of virsh) t.match(c, /virsh -c qemu:\/\/\/system /, c)
  const virtInstall = lines.filter((c) => /(^|\s)virt-install\s/.test(c))
  t.ok(virtInstall.length >= 2, `${virtInstall.length} virt-install commands`)
  for (const c of virtInstall) t.match(c, /virt-install --connect qemu:\/\/\/system /, c)
  for (const c of virtInstall) t.notMatch(c, /--boot bios/, 'no --boot bios (Debian 12\'s virt-install 4.1 refuses it)')
})

const virtInstallVersion = spawnSync('virt-install', ['--version'], { encoding: 'utf8' })
t.test('install.md: the virt-install command is accepted by virt-install', {
  skip: virtInstallVersion.status === 0 ? false : 'virt-install is not installed (apt install virtinst)'
}, async (t) => {
  const documented = commands(install).find((c) => /^sudo virt-install .*--cdrom/.test(c))!
  t.ok(documented, 'the documented command')
  const dir = scratchDir(t)
  writeFileSync(join(dir, 'installer.iso'), Buffer.alloc(2048))
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'exhibit.qcow2'), '1G'])
  // The same flags on libvirt's in-process test driver, printing the domain XML only.
  const cmd = documented.replace(/^sudo /, '')
    .replace('--connect qemu:///system', '--connect test:///default')
    .replace('/var/lib/libvirt/images/exhibit.qcow2', join(dir, 'exhibit.qcow2'))
    .replace('/path/to/installer.iso', join(dir, 'installer.iso')) + ' --print-xml'
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 0, `virt-install ${virtInstallVersion.stdout.trim()}: ${r.stderr}`)
  t.match(r.stdout, /<channel type="unix">[\s\S]*org\.qemu\.guest_agent\.0/, 'the guest agent channel')
  t.match(r.stdout, new RegExp(`<source file="${join(dir, 'exhibit.qcow2')}"/>\\s*<target dev="hda" bus="ide"/>`), 'the disk, on IDE (Windows XP has no virtio driver)')
  t.notMatch(r.stdout, /<loader/, 'BIOS firmware (no pflash loader)')
})

t.test('migration.md: the unit\'s Environment= lines, the libvirt URI EVC used, the way back', async (t) => {
  t.match(migration, /Environment=/, 'EVC\'s unit Environment= lines')
  t.match(migration, /systemctl cat exhibition-vm-controller/, 'how to see them')
  t.match(migration, /qemu:\/\/\/session/, 'plain virsh as non-root is qemu:///session')
  t.match(migration, /virsh uri/, 'how to find out which URI EVC used')
  t.match(migration, /## Going back to exhibition-vm-controller/)
  t.match(migration, /systemctl enable --now exhibition-vm-controller/)
  t.match(migration, /\.env/, 'EVC\'s .env file')
  t.match(migration, /data_dir: \/var\/lib\/kiosk-vm-watchdog/, 'the copied EVC config gets an absolute data_dir')
})
