// systemd-analyze checks our unit files as systemd would load them: `verify` (every directive
// known and parseable, the executable exists) and `security --offline` (the hardening took).
// Paths that only exist on a museum host (/usr/bin/node, /usr/bin/virt-viewer) are rewritten
// in a scratch copy to executables that exist here; nothing else is changed.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const UNITS = fileURLToPath(new URL('../../systemd/', import.meta.url))

/** Why systemd-analyze cannot run, or null. On a CI machine (CI=true, root) it installs Debian's systemd package. */
function systemdAnalyzeUnavailable (): string | null {
  const have = () => spawnSync('systemd-analyze', ['--version']).status === 0
  if (have()) return null
  if (process.env['CI'] !== 'true' || process.getuid?.() !== 0) {
    return 'systemd-analyze is missing (apt-get install systemd); installed automatically only on a CI machine (CI=true, root)'
  }
  t.comment('CI machine: installing Debian package systemd for systemd-analyze')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore', env })
  const r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'systemd'], { encoding: 'utf8', env })
  if (r.status !== 0 || !have()) return `installing systemd failed: ${r.stderr}`
  return null
}

const scratch = mkdtempSync(join(tmpdir(), 'kvw-units-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))

/** A copy of one of our files with `replace` applied, under its own name in a fresh directory. */
function copyUnit (name: string, replace: Array<[string | RegExp, string]> = []): string {
  const dir = mkdtempSync(join(scratch, 'unit-'))
  let text = readFileSync(join(UNITS, name), 'utf8')
  for (const [from, to] of replace) {
    if (typeof from === 'string' ? !text.includes(from) : !from.test(text)) throw new Error(`${name}: nothing matched ${String(from)}; the test is out of date`)
    text = text.replace(from, to)
  }
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

interface Analysis { status: number | null, problems: string[], stdout: string }

/** Runs systemd-analyze; `problems` are the stderr lines about this unit (systemd warns and goes on). */
function analyze (args: string[], unitPath: string, env: NodeJS.ProcessEnv = {}): Analysis {
  const r = spawnSync('systemd-analyze', [...args, unitPath], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice', ...env } })
  const unitName = unitPath.split('/').pop()!
  const problems = r.stderr.split('\n').filter((l) => l.includes(unitPath) || l.includes(unitName))
  return { status: r.status, problems, stdout: r.stdout }
}

// A user manager needs a runtime directory; a scratch one keeps the real session out of it.
const runtimeDir = join(scratch, 'xdg-runtime')
mkdirSync(runtimeDir)
chmodSync(runtimeDir, 0o700)
const userEnv = { XDG_RUNTIME_DIR: runtimeDir, HOME: scratch, XDG_CONFIG_HOME: join(scratch, 'config') }

// The viewer's binary does not exist on a test machine: stand in a real executable at a path
// that we then write into the copy.
const fakeViewer = join(scratch, 'bin', 'virt-viewer')
mkdirSync(join(scratch, 'bin'))
symlinkSync('/bin/true', fakeViewer)

const unavailable = systemdAnalyzeUnavailable()
const opts = unavailable ? { skip: unavailable } : {}

const serviceCopy = (extra: Array<[string | RegExp, string]> = []) =>
  copyUnit('kiosk-vm-watchdog.service', [[/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `], ...extra])

t.test('kiosk-vm-watchdog.service passes systemd-analyze verify without a warning', opts, async (t) => {
  const r = analyze(['verify', '--man=no'], serviceCopy())
  t.equal(r.status, 0, 'verify exits 0')
  t.same(r.problems, [], 'no warning about the unit')
})

t.test('the check would notice a broken unit (the test can fail)', opts, async (t) => {
  const typo = analyze(['verify', '--man=no'], serviceCopy([['WatchdogSec=30', 'WatchDogSec=30']]))
  t.match(typo.problems.join('\n'), /Unknown key .?WatchDogSec/, 'an unknown directive is reported')
  const badValue = analyze(['verify', '--man=no'], serviceCopy([['Type=notify', 'Type=notifyy']]))
  t.match(badValue.problems.join('\n'), /notifyy/, 'a bad value is reported')
  const missingExe = analyze(['verify', '--man=no'], copyUnit('kiosk-vm-watchdog.service', [['/usr/bin/node', '/nonexistent/node']]))
  t.not(missingExe.status, 0, 'a missing executable fails verify')
})

t.test('the directives the service relies on are there, as systemd reads them', opts, async (t) => {
  const text = readFileSync(join(UNITS, 'kiosk-vm-watchdog.service'), 'utf8')
  const directive = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1])
  t.same(directive('Type'), ['notify'])
  t.same(directive('NotifyAccess'), ['main'])
  t.same(directive('WatchdogSec'), ['30'])
  t.same(directive('Restart'), ['always'])
  t.same(directive('RestartPreventExitStatus'), ['73 78'], 'a bad config (EX_CONFIG) or a data directory in use is not restarted in a loop')
  t.same(directive('ExecStart'), ['/usr/bin/node /opt/kiosk-vm-watchdog/dist/cli.js serve'])
  t.match(directive('Environment').join(' '), /KVW_CONFIG=\/etc\/kiosk-vm-watchdog\/config\.yaml/)
  t.match(directive('Environment').join(' '), /KVW_DATA_DIR=%S\/kiosk-vm-watchdog/)
  t.same(directive('SupplementaryGroups'), ['libvirt'], 'reaches qemu:///system through the libvirt group')
  t.same([directive('CacheDirectory'), directive('CacheDirectoryMode')], [['kiosk-vm-watchdog'], ['0700']], 'V8\'s code cache: a directory only the service user can write (src/code-cache.ts)')

  const json = spawnSync('systemd-analyze', ['security', '--offline=yes', '--json=short', serviceCopy()], { encoding: 'utf8' })
  const checks = JSON.parse(json.stdout) as Array<{ name: string, set: boolean }>
  const isSet = (name: string) => checks.find((c) => c.name === name)?.set
  for (const name of ['ProtectSystem=', 'ProtectHome=', 'PrivateTmp=', 'NoNewPrivileges=', 'ProtectKernelTunables=',
    'ProtectControlGroups=', 'LockPersonality=', 'RestrictRealtime=', 'NotifyAccess=', 'RestrictAddressFamilies=~…']) {
    t.equal(isSet(name), true, `hardening in effect: ${name}`)
  }
  const text2 = spawnSync('systemd-analyze', ['security', '--offline=yes', serviceCopy()], { encoding: 'utf8' }).stdout
  const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(text2)?.[1])
  t.ok(level <= 2.5, `systemd rates the exposure low (${level} of 10; 2.5 or less)`)
})

t.test('kiosk-viewer.service (user unit) passes systemd-analyze --user verify', opts, async (t) => {
  const copy = copyUnit('kiosk-viewer.service', [[/^ExecStart=\/usr\/bin\/virt-viewer /m, `ExecStart=${fakeViewer} `]])
  const r = analyze(['--user', 'verify', '--man=no'], copy, userEnv)
  t.equal(r.status, 0, 'verify exits 0')
  t.same(r.problems, [], 'no warning about the unit')
  const typo = analyze(['--user', 'verify', '--man=no'], copyUnit('kiosk-viewer.service', [
    [/^ExecStart=\/usr\/bin\/virt-viewer /m, `ExecStart=${fakeViewer} `], ['Restart=always', 'Restart=allways']]), userEnv)
  t.match(typo.problems.join('\n'), /allways/, 'a bad value would be reported')
  const text = readFileSync(join(UNITS, 'kiosk-viewer.service'), 'utf8')
  t.match(text, /^ExecStart=\/usr\/bin\/virt-viewer --kiosk --full-screen --reconnect --wait --connect \$\{KIOSK_LIBVIRT_URI\} \$\{KIOSK_VM\}$/m)
  t.match(text, /^Restart=always$/m)
  t.match(text, /^RestartSec=2$/m)
})

t.test('openbox-autostart is valid sh and keeps the screen on', async (t) => {
  const path = join(UNITS, 'openbox-autostart')
  const r = spawnSync('sh', ['-n', path], { encoding: 'utf8' })
  t.equal(r.status, 0, `sh -n: ${r.stderr}`)
  const text = readFileSync(path, 'utf8')
  for (const line of ['xset s off', 'xset -dpms', 'xset s noblank', 'unclutter -idle 1 -root &', 'systemctl --user start kiosk-viewer.service']) {
    t.ok(text.includes(line), line)
  }
  const shellcheck = spawnSync('shellcheck', ['-s', 'sh', path], { encoding: 'utf8' })
  if (shellcheck.error) t.comment('shellcheck not installed: skipped its lint')
  else t.equal(shellcheck.status, 0, `shellcheck: ${shellcheck.stdout}`)
})
