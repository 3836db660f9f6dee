// config, data_dir, disk_space and systemd: real files in scratch dirs; systemctl answers from
// recorded output (this machine has no systemd as PID 1, and a test must not depend on one).
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { configCheck, dataDirCheck, diskSpaceCheck } from '../../src/doctor/checks/config.ts'
import { systemdCheck, viewerCheck } from '../../src/doctor/checks/systemd.ts'
import { doctorContext, runCheck, type CommandResult } from '../../src/doctor/index.ts'
import { ConfigError } from '../../src/config/load.ts'
import { exit, ok, scratch } from './helpers.ts'

t.test('config: valid (ok, naming the file) and not valid (fail)', async (t) => {
  const s = scratch(t)
  const good = await runCheck(doctorContext({ configFile: '/etc/kiosk-vm-watchdog/config.yaml', loaded: s.loaded, hypervisor: null, host: s.host }), configCheck)
  t.same(good, { id: 'config', level: 'ok', message: 'config /etc/kiosk-vm-watchdog/config.yaml is valid (1 VM: test)' })
  const error = new ConfigError('/x/config.yaml', ['api_port: Invalid input: expected number, received string'])
  const bad = await runCheck(doctorContext({ configFile: '/x/config.yaml', loaded: null, configError: error, hypervisor: null, host: s.host }), configCheck)
  t.equal(bad.level, 'fail')
  t.match(bad.message, 'config /x/config.yaml is not valid: api_port: Invalid input')
  t.match(bad.fix, 'kiosk-vm-watchdog check-config --config /x/config.yaml')
  // Every other check says it could not look, rather than crashing on a missing config.
  const other = await runCheck(doctorContext({ configFile: null, loaded: null, configError: error, hypervisor: null, host: s.host }), dataDirCheck)
  t.match(other, { level: 'warn', message: 'not checked: the config is not valid' })
})

t.test('data_dir: writable (ok), to be created (ok), under a file (fail)', async (t) => {
  t.match(await scratch(t).run(dataDirCheck), { level: 'ok', message: /data_dir .*\/data is writable$/ })
  const base = scratch(t)
  const later = scratch(t, { config: { data_dir: join(base.dir, 'later', 'deeper') } })
  t.match(await later.run(dataDirCheck), { level: 'ok', message: /does not exist yet; the service creates it/ })
  const s = scratch(t)
  writeFileSync(join(s.dir, 'afile'), 'x')
  const underFile = scratch(t, { config: { data_dir: join(s.dir, 'afile', 'data') } })
  const f = await underFile.run(dataDirCheck)
  t.equal(f.level, 'fail')
  t.match(f.message, /afile is not a directory/)
  t.match(f.fix, /sudo mkdir -p .* && sudo chown /)
})

t.test('disk_space: plenty (ok), under 1 GiB (warn), under 100 MiB (fail)', async (t) => {
  const real = await scratch(t).run(diskSpaceCheck)
  t.match(real.level, /^(ok|warn|fail)$/)
  t.match(real.message, /free for data_dir/)
  const MiB = 1024 ** 2
  t.match(await scratch(t, { host: { freeBytes: async () => 5000 * MiB } }).run(diskSpaceCheck), { level: 'ok', message: /^4\.9 GiB free/ })
  t.match(await scratch(t, { host: { freeBytes: async () => 500 * MiB } }).run(diskSpaceCheck), { level: 'warn', message: /^only 500\.0 MiB free .* \(below 1 GiB\)/ })
  t.match(await scratch(t, { host: { freeBytes: async () => 50 * MiB } }).run(diskSpaceCheck), { level: 'fail', message: /^only 50\.0 MiB free .*state and audit writes will fail/ })
})

t.test('systemd: not PID 1 (warn), enabled+active (ok), disabled+inactive (fail), not installed (warn); the viewer user unit', async (t) => {
  t.match(await scratch(t).run(systemdCheck), { level: 'warn', message: /^this host was not booted with systemd \(no .*no-systemd-run-dir\): cannot check kiosk-vm-watchdog\.service/ })
  // Inside the service, ProtectProc=invisible hides /proc/1: PID 1's name must not be the test.
  const hiddenProc = scratch(t, { commands: { 'systemctl is-enabled kiosk-vm-watchdog.service': ok('enabled\n'), 'systemctl is-active kiosk-vm-watchdog.service': ok('active\n') } })
  writeFileSync(join(hiddenProc.dir, 'pid1'), 'process_api\n')
  mkdirSync(join(hiddenProc.dir, 'run-systemd-system'))
  hiddenProc.host.paths.systemdRunDir = join(hiddenProc.dir, 'run-systemd-system')
  t.match(await hiddenProc.run(systemdCheck), { level: 'ok', message: 'kiosk-vm-watchdog.service is enabled, active' })

  function withSystemd (commands: Record<string, CommandResult>) {
    const s = scratch(t, { commands })
    mkdirSync(join(s.dir, 'run-systemd-system'))
    s.host.paths.systemdRunDir = join(s.dir, 'run-systemd-system')
    return s
  }
  const running = withSystemd({
    'systemctl is-enabled kiosk-vm-watchdog.service': ok('enabled\n'),
    'systemctl is-active kiosk-vm-watchdog.service': ok('active\n')
  })
  t.same(await running.run(systemdCheck), { id: 'systemd', level: 'ok', message: 'kiosk-vm-watchdog.service is enabled, active' })

  const stopped = withSystemd({
    'systemctl is-enabled kiosk-vm-watchdog.service': exit(1, 'disabled\n'),
    'systemctl is-active kiosk-vm-watchdog.service': exit(3, 'inactive\n')
  })
  const f = await stopped.run(systemdCheck)
  t.equal(f.level, 'fail')
  t.equal(f.message, 'kiosk-vm-watchdog.service is disabled, inactive: not running')
  t.match(f.fix, 'sudo systemctl enable --now kiosk-vm-watchdog.service')

  const noBoot = withSystemd({
    'systemctl is-enabled kiosk-vm-watchdog.service': exit(1, 'disabled\n'),
    'systemctl is-active kiosk-vm-watchdog.service': ok('active\n')
  })
  t.match(await noBoot.run(systemdCheck), { level: 'warn', message: /it will not start at boot/ })

  const absent = withSystemd({
    'systemctl is-enabled kiosk-vm-watchdog.service': exit(1, '', 'Failed to get unit file state for kiosk-vm-watchdog.service: No such file or directory\n'),
    'systemctl is-active kiosk-vm-watchdog.service': exit(3, 'inactive\n'),
    'systemctl --global is-enabled kiosk-viewer.service': exit(1, '', 'Failed to get unit file state for kiosk-viewer.service: No such file or directory\n')
  })
  t.match(await absent.run(systemdCheck), { level: 'warn', message: /is not installed/, fix: 'sudo ./scripts/install.sh (docs/install.md)' })
  t.match(await absent.run(viewerCheck), { level: 'ok', message: /kiosk-viewer\.service is not installed/ })

  const viewer = withSystemd({ 'systemctl --global is-enabled kiosk-viewer.service': exit(1, 'disabled\n') })
  t.match(await viewer.run(viewerCheck), { level: 'ok', message: 'kiosk-viewer.service is installed as a user unit (disabled); the kiosk session starts it' })
  t.match(await scratch(t).run(viewerCheck), { level: 'warn', message: /not booted with systemd/ })
})
