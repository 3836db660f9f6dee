// `doctor` finds the service's data directory from any working directory: a relative data_dir is
// relative to the config file (as the service, run from the file's directory, resolves it), so
// the documented `KVW_CONFIG=… doctor` run from elsewhere reports the service's saved state and
// reverts, not those of the directory it was started in.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig, parseConfig, readEvcDotEnv } from '../../src/config/load.ts'
import { emptyCounters } from '../../src/heartbeat/persisted.ts'
import { AuditLog, vmStatePath } from '../../src/store/index.ts'
import { scratchDir } from '../helpers/scratch.ts'
import { dataDirCheck } from '../../src/doctor/checks/config.ts'
import { scratch } from './helpers.ts'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

t.test('a relative data_dir is relative to the config file, from the file, .env or the environment', async (t) => {
  const dir = scratchDir(t)
  writeFileSync(join(dir, 'config.yaml'), 'data_dir: ./data\n')
  t.equal(loadConfig(join(dir, 'config.yaml'), {}).config.data_dir, join(dir, 'data'))
  writeFileSync(join(dir, 'other.yaml'), 'vm_name: test\n')
  t.equal(loadConfig(join(dir, 'other.yaml'), {}).config.data_dir, join(dir, 'data'), 'the default ./data too')
  writeFileSync(join(dir, 'abs.yaml'), 'data_dir: /var/lib/kiosk-vm-watchdog\n')
  t.equal(loadConfig(join(dir, 'abs.yaml'), {}).config.data_dir, '/var/lib/kiosk-vm-watchdog')
  // The service (its unit's working directory) and a hand-run doctor (anywhere) must agree.
  t.equal(loadConfig(join(dir, 'config.yaml'), { KVW_DATA_DIR: 'state' }).config.data_dir, join(dir, 'state'), 'KVW_DATA_DIR=state: the config file\'s directory, not the working directory')
  t.equal(loadConfig(join(dir, 'config.yaml'), { VMCTL_DATA_DIR: './evc' }).config.data_dir, join(dir, 'evc'), 'VMCTL_DATA_DIR too')
  t.equal(loadConfig(join(dir, 'config.yaml'), { KVW_DATA_DIR: '/srv/kvw' }).config.data_dir, '/srv/kvw', 'an absolute one as given')
  t.equal(parseConfig({}, {}).config.data_dir, join(process.cwd(), 'data'), 'no file: the working directory')
  t.equal(parseConfig({}, { KVW_DATA_DIR: 'state' }).config.data_dir, join(process.cwd(), 'state'), 'no file, from the environment: the working directory')
  // EVC's .env beside the config file: relative to the .env file's directory.
  const evc = scratchDir(t, 'kvw-evc-')
  writeFileSync(join(evc, 'config.yaml'), 'vm_name: test\n')
  writeFileSync(join(evc, '.env'), 'VMCTL_DATA_DIR=./data-from-dotenv\n')
  t.equal(loadConfig(join(evc, 'config.yaml'), {}).config.data_dir, join(evc, 'data-from-dotenv'), 'VMCTL_DATA_DIR=./x in .env: beside the .env file')
  t.equal(parseConfig({}, {}, null, readEvcDotEnv(join(evc, '.env'), null)).config.data_dir, join(evc, 'data-from-dotenv'), 'also when the .env is not in the working directory')
})

t.test('VMCTL_DATA_DIR=./data in the .env beside the config file: doctor run from elsewhere finds the same directory', async (t) => {
  const service = scratchDir(t, 'kvw-service-')
  const elsewhere = scratchDir(t, 'kvw-elsewhere-')
  writeFileSync(join(service, 'config.yaml'), 'libvirt_uri: test:///default\napi_port: 1\n')
  writeFileSync(join(service, '.env'), 'VMCTL_DATA_DIR=./evc-data\n')
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(KVW_|VMCTL_)/i.test(k)))
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'doctor', '--json'], {
    cwd: elsewhere, encoding: 'utf8', timeout: 60_000, env: { ...env, KVW_CONFIG: join(service, 'config.yaml') }
  })
  const report = JSON.parse(r.stdout) as { checks: Array<{ id: string, level: string, message: string }> }
  t.match(report.checks.find((c) => c.id === 'data_dir'), { message: new RegExp(`^data_dir ${join(service, 'evc-data').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} `) }, r.stderr)
})

t.test('doctor run from another directory reports the service\'s saved state and reverts', async (t) => {
  const service = scratchDir(t, 'kvw-service-')
  const elsewhere = scratchDir(t, 'kvw-elsewhere-')
  const config = join(service, 'config.yaml')
  // api_port 1: no service answers there, so the CLI reads the files (as with the service stopped).
  writeFileSync(config, 'libvirt_uri: test:///default\ndata_dir: ./data\napi_port: 1\n')
  const data = join(service, 'data')
  mkdirSync(join(data, 'state'), { recursive: true })
  const now = Date.now()
  const maintenance = { reason: 'technician', until: null, since: now - 60_000, note: null, previous: null }
  writeFileSync(vmStatePath(data, 'test'), JSON.stringify({
    version: 1, maintenance, exhausted: null, escalated: false, recentReverts: [], lastGuestRevertAt: null, counters: emptyCounters(), lastRevert: null
  }))
  const audit = new AuditLog({ dir: data })
  for (const ago of [20, 10]) await audit.append({ vm: 'test', kind: 'revert_started', reason: 'heartbeat_timeout', ts: new Date(now - ago * 60_000) })
  await audit.close()

  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(KVW_|VMCTL_)/i.test(k)))
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'doctor', '--json'], {
    cwd: elsewhere, encoding: 'utf8', timeout: 60_000, env: { ...env, KVW_CONFIG: config }
  })
  const report = JSON.parse(r.stdout) as { checks: Array<{ id: string, level: string, message: string }> }
  const check = (id: string) => report.checks.find((c) => c.id === id)!
  t.match(check('data_dir'), { level: 'ok', message: `data_dir ${data} is writable` })
  t.match(check('watchdog:test'), { level: 'warn', message: `"test" is in maintenance (technician) until switched back on: nothing reverts it on its own (saved state ${vmStatePath(data, 'test')})` })
  t.match(check('reverts:test'), { message: new RegExp(`^2 reverts of "test" in the last hour, 2 in the last day .*\\(${join(data, 'audit.jsonl').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)$`) })
})

t.test('data_dir elsewhere than the installed service\'s state directory: a warning with the fix', async (t) => {
  const s = scratch(t)
  const stateDir = join(s.dir, 'var-lib-kiosk-vm-watchdog')
  // No state directory of an installed service: nothing to compare with.
  t.match(await s.run(dataDirCheck), { level: 'ok', message: `data_dir ${s.loaded.config.data_dir} is writable` })
  mkdirSync(stateDir)
  const installed = scratch(t, { host: { paths: { serviceStateDir: stateDir } } })
  const found = await installed.run(dataDirCheck)
  t.equal(found.level, 'warn')
  t.match(found.message, `but the installed service keeps its state in ${stateDir} (systemd's state directory): the saved state and reverts below are read from ${installed.loaded.config.data_dir}`)
  t.match(found.fix, `set data_dir: ${stateDir}`)
  // The same directory (the installer's config, or KVW_DATA_DIR): ok.
  const same = scratch(t, { config: { data_dir: stateDir }, host: { paths: { serviceStateDir: stateDir } } })
  t.match(await same.run(dataDirCheck), { level: 'ok' })
})
