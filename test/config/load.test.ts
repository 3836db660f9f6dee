import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, EXIT_CONFIG, loadConfig, parseConfig } from '../../src/config/load.ts'
import { configSchema } from '../../src/config/schema.ts'

const repoConfig = fileURLToPath(new URL('../../config.yaml', import.meta.url))

function problems (fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('the shipped config.yaml is valid and states every default', async (t) => {
  const fromFile = loadConfig(repoConfig, {})
  const defaults = parseConfig({}, {})
  t.same(fromFile.config, defaults.config, 'config.yaml holds exactly the defaults')
  // Every key of the schema appears in config.yaml, so the file documents them all.
  const text = (await import('node:fs')).readFileSync(repoConfig, 'utf8')
  const legacy = new Set(['vm_startup_wait_interval', 'vm_startup_max_attempts', 'vm_startup_heartbeat_delay', 'api_reload', 'log_format', 'check_qemu_agent', 'qemu_agent_timeout'])
  for (const key of Object.keys(configSchema.shape)) {
    if (legacy.has(key)) continue
    t.match(text, new RegExp(`^${key}:`, 'm'), `config.yaml has ${key}`)
  }
})

t.test('defaults and the default VM', async (t) => {
  const { config, vms, file } = parseConfig({}, {})
  t.equal(file, null)
  t.equal(config.libvirt_uri, 'test:///default')
  t.equal(config.api_port, 8000)
  t.equal(config.log_level, 'info')
  t.equal(vms.length, 1)
  t.match(vms[0], { name: 'test', snapshot_name: 'ready', heartbeat_timeout: 15 })
})

t.test('an exhibition-vm-controller config keeps working', async (t) => {
  const dir = t.testdir({
    'config.yaml': [
      'vm_name: "artwork-vm"', 'snapshot_name: "ready"', 'heartbeat_timeout: 15.0', 'heartbeat_check_interval: 0.5',
      'vm_startup_wait_interval: 10.0', 'vm_startup_max_attempts: 30', 'vm_startup_heartbeat_delay: 10.0',
      'auto_revert_enabled: true', 'api_host: "0.0.0.0"', 'api_port: 8000', 'api_reload: false', 'log_level: "INFO"',
      'log_format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"', 'check_qemu_agent: true', 'qemu_agent_timeout: 5.0', ''
    ].join('\n')
  })
  const { config, vms } = loadConfig(join(dir, 'config.yaml'), {})
  t.equal(config.vm_name, 'artwork-vm')
  t.equal(config.log_level, 'info', 'EVC upper-case level accepted')
  t.equal(config.startup_grace, 10, 'vm_startup_heartbeat_delay stands in for startup_grace')
  t.equal(vms[0]!.heartbeat_check_interval, 0.5)
})

t.test('environment overrides: KVW_ wins over VMCTL_, values are typed', async (t) => {
  const { config } = parseConfig({ api_port: 8000 }, {
    VMCTL_API_PORT: '9000', KVW_API_PORT: '9001', KVW_AUTO_REVERT_ENABLED: 'false', VMCTL_VM_NAME: 'evc-vm', KVW_HEARTBEAT_TIMEOUT: '2.5', LIBVIRT_DEFAULT_URI: 'qemu:///system'
  })
  t.equal(config.api_port, 9001)
  t.equal(config.auto_revert_enabled, false)
  t.equal(config.vm_name, 'evc-vm')
  t.equal(config.heartbeat_timeout, 2.5)
  t.equal(config.libvirt_uri, 'qemu:///system', 'LIBVIRT_DEFAULT_URI as virsh would use it')
  t.match(problems(() => parseConfig({}, { KVW_API_PORT: 'eighty' })), [/KVW_API_PORT \(environment\): "eighty": not a decimal number/])
})

t.test('bad files: each problem names the key path', async (t) => {
  t.match(problems(() => parseConfig({ heartbeat_timeout: 'soon' }, {})), [/^heartbeat_timeout: .*number/])
  t.match(problems(() => parseConfig({ heartbeat_timeout: 0 }, {})), [/^heartbeat_timeout: .*>=\s*1/])
  t.match(problems(() => parseConfig({ api_port: 70000 }, {})), [/^api_port: /])
  t.match(problems(() => parseConfig({ heartbeat_timout: 10 }, {})), [/heartbeat_timout: unknown key/])
  t.match(problems(() => parseConfig({ vm_name: 'bad name/../x' }, {})), [/^vm_name: letters, digits/])
  t.match(problems(() => parseConfig({ log_level: 'loud' }, {})), [/^log_level: /])
  t.match(problems(() => parseConfig({ vms: [{ name: 'b', heartbeat_timeout: -1 }] }, {})), [/^vms\[0\]\.heartbeat_timeout: /])
  t.match(problems(() => parseConfig({ vms: [{ heartbeat_timeout: 5 }] }, {})), [/^vms\[0\]\.name: /])
  t.match(problems(() => parseConfig({ vms: [{ name: 'test' }] }, {})), [/listed twice/])
  t.equal(problems(() => parseConfig({ api_port: 'x', max_reverts: 0 }, {})).length, 2, 'all problems at once')

  const dir = t.testdir({
    'syntax.yaml': 'vm_name: [unclosed\n',
    'list.yaml': '- a\n- b\n',
    'dup.yaml': 'api_port: 1\napi_port: 2\n',
    'empty.yaml': ''
  })
  t.match(problems(() => loadConfig(join(dir, 'syntax.yaml'), {})), [/YAML syntax/])
  t.match(problems(() => loadConfig(join(dir, 'list.yaml'), {})), [/must be a mapping/])
  t.match(problems(() => loadConfig(join(dir, 'dup.yaml'), {})), [/YAML syntax: .*unique/i])
  t.match(problems(() => loadConfig(join(dir, 'missing.yaml'), {})), [/cannot read the file/])
  t.equal(loadConfig(join(dir, 'empty.yaml'), {}).config.api_port, 8000, 'an empty file means defaults')
})

t.test('per-VM settings inherit from the top level', async (t) => {
  const { vms } = parseConfig({ heartbeat_timeout: 20, vms: [{ name: 'second', snapshot_name: 'start' }] }, {})
  t.match(vms, [{ name: 'test', heartbeat_timeout: 20 }, { name: 'second', heartbeat_timeout: 20, snapshot_name: 'start' }])
})

t.test('the CLI exits 78 on a bad file, naming the key path', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'api_port: "eighty"\n' })
  writeFileSync(join(dir, 'ok.yaml'), 'vm_name: test\n')
  const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
  const bad = spawnSync(process.execPath, ['--import', 'tsx', cli, 'serve', '--config', join(dir, 'bad.yaml')], { encoding: 'utf8', timeout: 20_000 })
  t.equal(bad.status, EXIT_CONFIG)
  t.match(bad.stderr, /bad\.yaml: api_port: /)
  const check = spawnSync(process.execPath, ['--import', 'tsx', cli, 'check-config', '--config', join(dir, 'bad.yaml')], { encoding: 'utf8', timeout: 20_000 })
  t.equal(check.status, EXIT_CONFIG)
  t.match(check.stdout, /api_port/)
})
