// Issue 13, point 5, as the attacks: values past every limit, in the file and the environment,
// end in exit 78 naming the key, the value and what is allowed; never a stack trace, never a
// service that polls every millisecond or answers 500 "Invalid time value".
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { ConfigError, EXIT_CONFIG, parseConfig } from '../../src/config/load.ts'
import { configSchema } from '../../src/config/schema.ts'
import { scratchDir } from '../helpers/scratch.ts'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

function problems (raw: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(raw, env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

function checkConfig (args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, 'check-config', ...args], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(KVW|VMCTL)_/.test(key))), ...env },
    encoding: 'utf8'
  })
  return { code: r.status, out: r.stdout + r.stderr }
}

t.test('every number in the schema has an upper bound (EVC keys that are ignored aside)', async (t) => {
  const ignored = new Set(['vm_startup_wait_interval', 'vm_startup_max_attempts', 'qemu_agent_timeout'])
  const unbounded: string[] = []
  const walk = (node: any, path: string): void => {
    if (node === null || typeof node !== 'object') return
    if ((node.type === 'number' || node.type === 'integer') && node.maximum === undefined && node.exclusiveMaximum === undefined && !ignored.has(path)) unbounded.push(path)
    for (const [key, value] of Object.entries(node.properties ?? {})) walk(value, path === '' ? key : `${path}.${key}`)
    if (node.items) walk(node.items, `${path}[]`)
    for (const key of ['anyOf', 'oneOf', 'allOf']) for (const value of node[key] ?? []) walk(value, path)
    if (typeof node.additionalProperties === 'object') walk(node.additionalProperties, `${path}.*`)
  }
  walk(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }), '')
  t.same(unbounded, [], 'no duration, count or size without a maximum')
})

t.test('durations past their bound: the key, the value and the limit', async (t) => {
  t.same(problems({ heartbeat_check_interval: 2_200_000 }), ['heartbeat_check_interval: at most 3600 s (got 2200000)'], 'over 2^31 ms: refused, not a 1 ms poll')
  t.same(problems({ heartbeat_timeout: 1e13 }), ['heartbeat_timeout: at most 86400 s (got 10000000000000)'], 'not an invalid date in /status later')
  t.same(problems({ vms: [{ name: 'b', post_revert_grace: 1e9 }] }), ['vms[0].post_revert_grace: at most 86400 s (got 1000000000)'])
  t.same(problems({ maintenance_minutes: 1e9 }), ['maintenance_minutes: at most 525600 (a year) (got 1000000000)'])
  t.same(problems({ libvirt_keepalive_count: 1e6 }), ['libvirt_keepalive_count: at most 100 (got 1000000)'])
  t.same(problems({ heartbeat_timeout: 86_400, heartbeat_check_interval: 3600 }), [], 'the bounds themselves are allowed')
})

t.test('cross-field and address checks are in the schema', async (t) => {
  t.same(problems({ api_port: 9000, security: { admin_port: 9000 } }), ['security.admin_port: is the same as api_port (9000): the admin listener needs a port of its own (got 9000)'])
  t.same(problems({ api_port: 0, security: { admin_port: 0 } }), [], 'port 0 (any free port) twice is fine')
  t.match(problems({ api_host: '999.1.1.1' }), [/^api_host: not an IP address or host name .*\(got "999\.1\.1\.1"\)$/])
  t.match(problems({ security: { admin_host: 'a b' } }), [/^security\.admin_host: not an IP address or host name/])
  for (const host of ['0.0.0.0', '127.0.0.1', '::', '::1', 'localhost', 'kiosk-3.museum.example']) t.same(problems({ api_host: host }), [], host)
})

t.test('environment: hex is not a number, and every refusal says why', async (t) => {
  t.same(problems({}, { KVW_HEARTBEAT_TIMEOUT: '0x10' }), ['KVW_HEARTBEAT_TIMEOUT (environment): "0x10": not a decimal number (write it in decimal, e.g. 15 or 0.5; hex, octal, binary and underscores are not read)'])
  for (const value of ['0b10', '1_0', ' 16', 'Infinity']) t.match(problems({}, { KVW_HEARTBEAT_TIMEOUT: value }), [/not a decimal number/], value)
  t.same(problems({}, { KVW_HEARTBEAT_TIMEOUT: '0' }), ['KVW_HEARTBEAT_TIMEOUT (environment): "0": Too small: expected number to be >=1'])
  t.same(problems({}, { VMCTL_HEARTBEAT_TIMEOUT: '1e13' }), ['VMCTL_HEARTBEAT_TIMEOUT (environment): "1e13": at most 86400 s'])
  t.same(problems({}, { KVW_AUTO_REVERT_ENABLED: 'maybe' }), ['KVW_AUTO_REVERT_ENABLED (environment): "maybe": expected true or false (also yes/no, on/off, 1/0)'])
  t.match(problems({}, { KVW_API_HOST: '999.1.1.1' }), [/^KVW_API_HOST \(environment\): "999\.1\.1\.1": not an IP address or host name/])
  t.equal(parseConfig({}, { KVW_HEARTBEAT_TIMEOUT: '16.5' }).config.heartbeat_timeout, 16.5, 'decimal still works')
})

t.test('check-config: exit 78 with a message, never a stack trace', async (t) => {
  const dir = scratchDir(t)
  const bomb = join(dir, 'bomb.yaml')
  const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
  for (const [i, name] of ['b', 'c', 'd', 'e', 'f', 'g', 'h'].entries()) {
    const prev = 'abcdefg'[i]
    lines.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`)
  }
  writeFileSync(bomb, lines.join('\n') + '\n')
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['YAML alias bomb', ['--config', bomb], {}, /YAML: Excessive alias count/],
    ['--config without a value', ['--config'], {}, /Option '-c, --config <value>' argument missing/],
    ['heartbeat_check_interval over 2^31 ms', [], { KVW_CONFIG: writeConfig(dir, 'poll.yaml', 'heartbeat_check_interval: 2200000\n') }, /heartbeat_check_interval: at most 3600 s \(got 2200000\)/],
    ['admin_port = api_port', [], { KVW_CONFIG: writeConfig(dir, 'ports.yaml', 'api_port: 8000\nsecurity:\n  admin_port: 8000\n') }, /security\.admin_port: is the same as api_port/],
    ['api_host 999.1.1.1', [], { KVW_CONFIG: writeConfig(dir, 'host.yaml', 'api_host: 999.1.1.1\n') }, /api_host: not an IP address/],
    ['KVW_HEARTBEAT_TIMEOUT=0x10', [], { KVW_HEARTBEAT_TIMEOUT: '0x10' }, /KVW_HEARTBEAT_TIMEOUT \(environment\): "0x10": not a decimal number/]
  ]
  for (const [what, args, env, message] of cases) {
    const r = checkConfig(args, env)
    t.equal(r.code, EXIT_CONFIG, `${what}: exit 78`)
    t.match(r.out, message, `${what}: says what is wrong`)
    t.notMatch(r.out, /\n\s+at .*\(.*:\d+:\d+\)/, `${what}: no stack trace`)
  }
})

function writeConfig (dir: string, name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
