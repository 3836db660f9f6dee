// Every exhibition-vm-controller setting, from config.yaml, from VMCTL_<KEY> and from EVC's .env
// file, is either honoured or named in a warning; a bad value is refused (exit 78) naming the
// variable, the value and what is allowed. EVC's own example config (../shared/evc-client, read
// in place) passes check-config.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, EVC_IGNORED_KEYS, EXIT_CONFIG, loadConfig, parseConfig, readEvcDotEnv } from '../../src/config/load.ts'
import { scratchDir } from '../helpers/scratch.ts'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const EVC_EXAMPLE = fileURLToPath(new URL('../../../shared/evc-client/config.example.yaml', import.meta.url))

/** The CLI with an environment of our own: no KVW_ or VMCTL_ variable of the caller leaks in. */
function runCli (args: string[], env: Record<string, string>, cwd?: string) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(KVW_|VMCTL_|LIBVIRT_DEFAULT_URI$)/i.test(k)))
  // tsx by its URL: the working directory may be one without node_modules.
  return spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...base, ...env }, ...(cwd ? { cwd } : {}) })
}

function problemsOf (fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

// EVC v1.3.0's settings (host-controller/vm_controller/config.py) with a value of the right type.
const EVC_VALUES: Record<string, string> = {
  VM_NAME: 'artwork',
  SNAPSHOT_NAME: 'start',
  HEARTBEAT_TIMEOUT: '20',
  HEARTBEAT_CHECK_INTERVAL: '0.25',
  VM_STARTUP_WAIT_INTERVAL: '5',
  VM_STARTUP_MAX_ATTEMPTS: '12',
  VM_STARTUP_HEARTBEAT_DELAY: '30',
  AUTO_REVERT_ENABLED: 'false',
  API_HOST: '127.0.0.1',
  API_PORT: '8100',
  API_RELOAD: 'false',
  LOG_LEVEL: 'WARNING',
  LOG_FORMAT: '%(message)s',
  CHECK_QEMU_AGENT: 'false',
  QEMU_AGENT_TIMEOUT: '2.5'
}

t.test('every VMCTL_ variable of EVC is honoured or named in a warning', async (t) => {
  const env = Object.fromEntries(Object.entries(EVC_VALUES).map(([k, v]) => [`VMCTL_${k}`, v]))
  const loaded = parseConfig({}, env)
  t.match(loaded.config, {
    vm_name: 'artwork',
    snapshot_name: 'start',
    heartbeat_timeout: 20,
    heartbeat_check_interval: 0.25,
    auto_revert_enabled: false,
    api_host: '127.0.0.1',
    api_port: 8100,
    log_level: 'warn'
  })
  t.equal(loaded.vms[0]!.startup_grace, 30, 'VMCTL_VM_STARTUP_HEARTBEAT_DELAY stands in for startup_grace')
  for (const key of Object.keys(EVC_IGNORED_KEYS)) {
    const name = `VMCTL_${key.toUpperCase()}`
    t.ok(loaded.warnings.some((w) => w.startsWith(`${name} (environment): an exhibition-vm-controller setting, accepted and ignored (`)), `${name} is named in a warning`)
  }
  t.equal(loaded.warnings.length, Object.keys(EVC_IGNORED_KEYS).length, 'no warning for the honoured ones')
})

t.test('VMCTL_ names are case-insensitive (as EVC); unknown ones and later EVC versions\' are named', async (t) => {
  const loaded = parseConfig({}, { vmctl_api_port: '8200', VMCTL_HEARTBEAT_TIMOUT: '20', VMCTL_HEARTBEAT_RECOVERY_BACKOFF: '30' })
  t.equal(loaded.config.api_port, 8200)
  t.match(loaded.warnings, [
    /^VMCTL_HEARTBEAT_TIMOUT \(environment\): not a setting, not read \(VMCTL_ names: .*HEARTBEAT_TIMEOUT/,
    /^VMCTL_HEARTBEAT_RECOVERY_BACKOFF \(environment\): a setting of a later exhibition-vm-controller version, not read here/
  ])
  // The same later-version keys in config.yaml: dropped with a warning, not "unknown key".
  const later = parseConfig({ trusted_proxies: ['127.0.0.1'], plugins: null }, {})
  t.match(later.warnings, [/^trusted_proxies: a setting of a later/, /^plugins: a setting of a later/])
})

t.test('bad VMCTL_ values are refused, naming variable, value and what is allowed', async (t) => {
  t.same(problemsOf(() => parseConfig({}, { VMCTL_HEARTBEAT_CHECK_INTERVAL: 'bogus' })), [
    'VMCTL_HEARTBEAT_CHECK_INTERVAL (environment): "bogus": not a decimal number (write it in decimal, e.g. 15 or 0.5; hex, octal, binary and underscores are not read)'
  ])
  t.match(problemsOf(() => parseConfig({}, { VMCTL_HEARTBEAT_CHECK_INTERVAL: '0' })), [/^VMCTL_HEARTBEAT_CHECK_INTERVAL \(environment\): "0": .*>=0\.05/])
  t.same(problemsOf(() => parseConfig({}, { VMCTL_CHECK_QEMU_AGENT: 'maybe' })), [
    'VMCTL_CHECK_QEMU_AGENT (environment): "maybe": expected true or false (also yes/no, on/off, 1/0)'
  ])
  // Ignored settings are still checked as EVC checked them (gt=0 there).
  t.same(problemsOf(() => parseConfig({}, { VMCTL_QEMU_AGENT_TIMEOUT: '-1' })), ['VMCTL_QEMU_AGENT_TIMEOUT (environment): "-1": a number of seconds greater than 0'])
  t.match(problemsOf(() => parseConfig({ vm_startup_max_attempts: 2.5 }, {})), [/^vm_startup_max_attempts: a whole number greater than 0 \(got 2\.5\)/])
  t.match(problemsOf(() => parseConfig({}, { VMCTL_VM_STARTUP_HEARTBEAT_DELAY: 'soon' })), [/^VMCTL_VM_STARTUP_HEARTBEAT_DELAY \(environment\): "soon": not a decimal number/])

  const dir = scratchDir(t)
  writeFileSync(join(dir, 'config.yaml'), 'libvirt_uri: test:///default\n')
  const r = runCli(['check-config', '--config', join(dir, 'config.yaml')], { VMCTL_HEARTBEAT_CHECK_INTERVAL: 'bogus' })
  t.equal(r.status, EXIT_CONFIG, r.stdout + r.stderr)
  t.match(r.stdout, /VMCTL_HEARTBEAT_CHECK_INTERVAL \(environment\): "bogus": not a decimal number/)
})

t.test('EVC config keys in the file: ignored ones are named; a VMCTL_ over a file value is named', async (t) => {
  const loaded = parseConfig({ log_format: '%(message)s', check_qemu_agent: true, api_port: 8000 }, { VMCTL_API_PORT: '9000' })
  t.equal(loaded.config.api_port, 9000, 'the environment wins, as EVC\'s docs say')
  t.match(loaded.warnings, [
    /^VMCTL_API_PORT=9000 \(environment\) overrides api_port: 8000 in the config file \(EVC v1\.3\.0 let the file win/,
    /^log_format: an exhibition-vm-controller setting, accepted and ignored \(logs are JSON/,
    /^check_qemu_agent: an exhibition-vm-controller setting, accepted and ignored/
  ])
  t.same(parseConfig({ api_port: 9000 }, { VMCTL_API_PORT: '9000' }).warnings, [], 'the same value: nothing to say')
})

t.test('EVC\'s .env beside the config file is read; the real environment wins over it', async (t) => {
  const dir = scratchDir(t)
  writeFileSync(join(dir, 'config.yaml'), 'libvirt_uri: test:///default\n')
  writeFileSync(join(dir, '.env'), [
    '# EVC .env',
    'VMCTL_VM_NAME="from-dotenv"',
    'export VMCTL_API_PORT=8300',
    "VMCTL_SNAPSHOT_NAME='clean' # comment",
    'VMCTL_HEARTBEAT_TIMEOUT=25 # seconds',
    'OTHER_TOOL_SETTING=whatever',
    ''
  ].join('\n'))
  const loaded = loadConfig(join(dir, 'config.yaml'), {})
  t.match(loaded.config, { vm_name: 'from-dotenv', api_port: 8300, snapshot_name: 'clean', heartbeat_timeout: 25 })
  t.same(loaded.warnings, [])
  t.equal(loadConfig(join(dir, 'config.yaml'), { VMCTL_API_PORT: '8400' }).config.api_port, 8400, 'environment over .env')
  t.equal(loadConfig(join(dir, 'config.yaml'), { KVW_API_PORT: '8500' }).config.api_port, 8500, 'KVW_ over .env')

  writeFileSync(join(dir, '.env'), 'VMCTL_HEARTBEAT_CHECK_INTERVAL=bogus\n')
  t.same(problemsOf(() => loadConfig(join(dir, 'config.yaml'), {})), [
    `VMCTL_HEARTBEAT_CHECK_INTERVAL (${join(dir, '.env')}): "bogus": not a decimal number (write it in decimal, e.g. 15 or 0.5; hex, octal, binary and underscores are not read)`
  ])
  // A .env that is there but cannot be read: beside the config file the service refuses to run
  // without its settings; in the working directory (no config file) it is only named.
  const other = scratchDir(t)
  mkdirSync(join(other, '.env'))
  writeFileSync(join(other, 'config.yaml'), 'vm_name: test\n')
  t.match(problemsOf(() => loadConfig(join(other, 'config.yaml'), {})), [/^EVC's \.env file .*\.env: cannot read it: EISDIR$/])
  t.same(readEvcDotEnv(join(other, '.env'), null), { path: join(other, '.env'), values: {}, unreadable: 'EISDIR' })
  t.match(parseConfig({}, {}, null, readEvcDotEnv(join(other, '.env'), null)).warnings, [/\.env: cannot read it \(EISDIR\); its VMCTL_ settings are not applied$/])
  // Without a config file, EVC read .env from its working directory: so does the CLI.
  writeFileSync(join(dir, '.env'), 'VMCTL_API_PORT=bogus\n')
  const r = runCli(['check-config'], {}, dir)
  t.equal(r.status, EXIT_CONFIG, r.stdout + r.stderr)
  t.match(r.stdout, /VMCTL_API_PORT \(.*\.env\): "bogus"/)
})

t.test('EVC\'s config.example.yaml passes check-config with VMCTL_VM_NAME=test', { skip: existsSync(EVC_EXAMPLE) ? false : `${EVC_EXAMPLE} is absent (EVC's client files live in ../shared/evc-client beside the checkout)` }, async (t) => {
  const loaded = loadConfig(EVC_EXAMPLE, { VMCTL_VM_NAME: 'test' })
  t.equal(loaded.config.vm_name, 'test')
  t.equal(loaded.config.heartbeat_check_interval, 0.5)
  // Its data_dir is the default, relative to the file: never written here (check-config does not write).
  const r = runCli(['check-config', '--config', EVC_EXAMPLE], { VMCTL_VM_NAME: 'test' })
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.match(r.stdout, /^warn config: config .*config\.example\.yaml is valid \(1 VM: test\); 7 settings to look at:/m)
  for (const key of Object.keys(EVC_IGNORED_KEYS)) t.match(r.stdout, new RegExp(`^ {5}- ${key}: an exhibition-vm-controller setting, accepted and ignored`, 'm'), key)
  t.match(r.stdout, /VMCTL_VM_NAME=test \(environment\) overrides vm_name: "your-vm-name" in the config file/)
  t.match(r.stdout, /^ok {3}domain:test: /m)
})

t.test('serve names the unused settings in its log at start', async (t) => {
  const dir = scratchDir(t)
  writeFileSync(join(dir, 'config.yaml'), 'libvirt_uri: test:///default\napi_host: 127.0.0.1\napi_port: 0\ndata_dir: ./data\nlog_format: "%(message)s"\n')
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(KVW_|VMCTL_)/i.test(k)))
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'serve', '--config', join(dir, 'config.yaml')], {
    env: { ...base, NOTIFY_SOCKET: '', VMCTL_QEMU_AGENT_TIMEOUT: '5' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  const listening = new Promise<void>((resolve) => {
    const read = (d: Buffer) => {
      out += d.toString()
      if (/listening/i.test(out)) resolve()
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
  })
  // A hang detector only: a start that takes a minute is stuck, not slow.
  const hang = setTimeout(() => child.kill('SIGKILL'), 60_000)
  await Promise.race([listening, once(child, 'exit')])
  child.kill('SIGTERM')
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
  clearTimeout(hang)
  t.match(out, /config: log_format: an exhibition-vm-controller setting, accepted and ignored/)
  t.match(out, /config: VMCTL_QEMU_AGENT_TIMEOUT \(environment\): an exhibition-vm-controller setting, accepted and ignored/)
})
