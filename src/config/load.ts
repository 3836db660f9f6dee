// Reads config.yaml once, applies environment overrides and validates the result with the one
// schema. Everything that goes wrong becomes a ConfigError whose lines name the key path.
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import { z } from 'zod'
import { configSchema, securitySchema, VM_SETTING_KEYS, type Config, type VmConfig, type VmSettings } from './schema.ts'

/** Exit code for a bad configuration (EX_CONFIG from sysexits.h; systemd shows it as "CONFIG"). */
export const EXIT_CONFIG = 78

export class ConfigError extends Error {
  readonly problems: string[]
  readonly file: string | null
  constructor (file: string | null, problems: string[]) {
    super(`${file ?? 'configuration'}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join('\n  ')}`}`)
    this.name = 'ConfigError'
    this.file = file
    this.problems = problems
  }
}

/**
 * Environment variables that override config keys. KVW_ is ours; VMCTL_ is what
 * exhibition-vm-controller read, so its systemd units keep working.
 */
export const ENV_OVERRIDES: Record<string, keyof Config> = {
  LIBVIRT_URI: 'libvirt_uri',
  VM_NAME: 'vm_name',
  SNAPSHOT_NAME: 'snapshot_name',
  HEARTBEAT_TIMEOUT: 'heartbeat_timeout',
  AUTO_REVERT_ENABLED: 'auto_revert_enabled',
  API_HOST: 'api_host',
  API_PORT: 'api_port',
  LOG_LEVEL: 'log_level',
  DATA_DIR: 'data_dir'
}
export const ENV_PREFIXES = ['KVW_', 'VMCTL_'] as const

/**
 * exhibition-vm-controller v1.3.0 settings we have no use for. EVC read each from config.yaml or
 * as VMCTL_<KEY>; both are accepted, checked as EVC checked them, and named in a warning.
 */
export const EVC_IGNORED_KEYS: Record<string, { why: string, schema: z.ZodType }> = {
  vm_startup_wait_interval: { why: 'the VM is not polled at start; startup_grace covers the boot', schema: z.number().gt(0, 'a number of seconds greater than 0') },
  vm_startup_max_attempts: { why: 'the VM is not polled at start; startup_grace covers the boot', schema: z.int('a whole number greater than 0').gt(0, 'a whole number greater than 0') },
  api_reload: { why: 'a development switch of EVC\'s web server', schema: z.boolean() },
  log_format: { why: 'logs are JSON lines, pretty on a terminal', schema: z.string() },
  check_qemu_agent: { why: 'heartbeats alone decide; doctor check guest_agent:VM reports the agent channel', schema: z.boolean() },
  qemu_agent_timeout: { why: 'the guest agent is not asked', schema: z.number().gt(0, 'a number of seconds greater than 0') }
}

/** Settings of EVC versions after v1.3.0: not read here (the YAML key is dropped), named in a warning. */
export const EVC_LATER_KEYS: Record<string, string> = {
  heartbeat_recovery_backoff: 'reverts are limited by max_reverts, revert_window and revert_retry_*',
  guest_guard_fail_open: 'security.guest_networks decides who may call guest endpoints',
  trusted_proxies: 'no proxy headers are trusted; client addresses come from the socket',
  plugins: 'there are no plugins'
}

/** VMCTL_<KEY>: every EVC v1.3.0 setting (and ours in ENV_OVERRIDES), as the config key it sets. */
export const VMCTL_OVERRIDES: Record<string, string> = {
  ...ENV_OVERRIDES,
  HEARTBEAT_CHECK_INTERVAL: 'heartbeat_check_interval',
  VM_STARTUP_HEARTBEAT_DELAY: 'vm_startup_heartbeat_delay',
  ...Object.fromEntries(Object.keys(EVC_IGNORED_KEYS).map((key) => [key.toUpperCase(), key]))
}

export interface LoadedConfig {
  config: Config
  /** Every watched VM, the default one first, with top-level values filled in. */
  vms: VmConfig[]
  /** The file that was read, or null when only defaults and the environment were used. */
  file: string | null
  /** Settings that were given but are not used (EVC keys, unknown VMCTL_ variables), one line each. */
  warnings: string[]
}

/** Picks the file: --config, then $KVW_CONFIG, then ./config.yaml. */
export function configPath (argvPath: string | undefined, env: NodeJS.ProcessEnv): string {
  return resolve(argvPath ?? env['KVW_CONFIG'] ?? 'config.yaml')
}

export function loadConfig (file: string | null, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let raw: unknown = {}
  if (file !== null) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(file, [`cannot read the file: ${(err as Error).message}`])
    }
    raw = parseYaml(file, text)
  }
  const dotEnv = readEvcDotEnv(join(file === null ? resolve('.') : dirname(file), '.env'), file)
  return readAdminTokenFile(parseConfig(raw, env, file, dotEnv))
}

/** The VMCTL_ lines of EVC's `.env` file; `unreadable`: why a file that is there was not read. */
export interface EvcDotEnv { path: string, values: Record<string, string>, unreadable?: string }

/**
 * EVC (pydantic-settings, `env_file=".env"`) read `.env` from its working directory, the one that
 * held its config.yaml: here the directory of the config file (the working directory without
 * one). Only VMCTL_ names are taken; the real environment wins over the file, as in EVC.
 */
export function readEvcDotEnv (path: string, file: string | null): EvcDotEnv | null {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return null
    // Beside the config file it holds the service's settings: refuse to run without them. In
    // the working directory (no config file) it may be anyone's, e.g. the CLI run from /root.
    if (file !== null) throw new ConfigError(file, [`EVC's .env file ${path}: cannot read it: ${code ?? (err as Error).message}`])
    return { path, values: {}, unreadable: code ?? (err as Error).message }
  }
  const values: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    // python-dotenv's format: [export] NAME=value, 'single' or "double" quotes, # comments.
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (match === null || !/^VMCTL_/i.test(match[1]!)) continue
    let value = match[2]!
    const quoted = /^(['"])(.*)\1(\s+#.*)?$/.exec(value)
    if (quoted !== null) value = quoted[1] === '"' ? quoted[2]!.replace(/\\(["\\])/g, '$1').replace(/\\n/g, '\n') : quoted[2]!
    else value = value.replace(/\s+#.*$/, '')
    values[match[1]!] = value
  }
  return { path, values }
}

/**
 * Reads `security.admin_token_file` into `security.admin_token` (relative paths are relative to
 * the config file), so the app gets the token without reading files itself. The token never
 * appears in an error message.
 */
export function readAdminTokenFile (loaded: LoadedConfig): LoadedConfig {
  const tokenFile = loaded.config.security.admin_token_file
  if (tokenFile === undefined) return loaded
  const path = resolve(loaded.file === null ? '.' : dirname(loaded.file), tokenFile)
  let token: string
  try {
    token = readFileSync(path, 'utf8').trim()
  } catch (err) {
    throw new ConfigError(loaded.file, [`security.admin_token_file: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
  }
  const problems = securitySchema.shape.admin_token.safeParse(token).error?.issues.map((i) => `security.admin_token_file: the token in ${path}: ${i.message}`) ?? []
  if (problems.length > 0) throw new ConfigError(loaded.file, problems)
  return { ...loaded, config: { ...loaded.config, security: { ...loaded.config.security, admin_token: token } } }
}

function parseYaml (file: string, text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}`))
  }
  let value: unknown
  try {
    // The yaml library refuses documents whose aliases expand too far (a "billion laughs" bomb).
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw new ConfigError(file, [`YAML: ${(err as Error).message.split('\n')[0]} (aliases * and anchors & are limited; write the values out)`])
  }
  if (value === null || value === undefined) return {}
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(file, ['the file must be a mapping of keys to values (key: value)'])
  }
  return value
}

export function parseConfig (raw: unknown, env: NodeJS.ProcessEnv, file: string | null = null, dotEnv: EvcDotEnv | null = null): LoadedConfig {
  const input: Record<string, unknown> = { ...(raw as Record<string, unknown>) }
  const problems: string[] = []
  const warnings: string[] = []
  for (const [key, why] of Object.entries(EVC_LATER_KEYS)) {
    if (!(key in input)) continue
    warnings.push(`${key}: a setting of a later exhibition-vm-controller version, not read here (${why})`)
    delete input[key]
  }
  if (dotEnv?.unreadable !== undefined) warnings.push(`${dotEnv.path}: cannot read it (${dotEnv.unreadable}); its VMCTL_ settings are not applied`)
  const fromEnv = applyEnv(input, env, problems, warnings, dotEnv)
  for (const [key, { why, schema }] of Object.entries(EVC_IGNORED_KEYS)) {
    if (input[key] === undefined) continue
    const where = fromEnv.get(key) ?? key
    const issue = schema.safeParse(input[key]).error?.issues[0]
    if (issue !== undefined) problems.push(`${where}: ${issue.message}${shownValue(key, input[key])} (an exhibition-vm-controller setting; not used here, but EVC refused this value too)`)
    else warnings.push(`${where}: an exhibition-vm-controller setting, accepted and ignored (${why})`)
  }
  // EVC's startup delay stands in for startup_grace when only it is given.
  if (input['startup_grace'] === undefined && typeof input['vm_startup_heartbeat_delay'] === 'number') {
    input['startup_grace'] = input['vm_startup_heartbeat_delay']
  }
  // EVC reached libvirt through virsh, which honours LIBVIRT_DEFAULT_URI.
  if (input['libvirt_uri'] === undefined && env['LIBVIRT_DEFAULT_URI']) {
    input['libvirt_uri'] = env['LIBVIRT_DEFAULT_URI']
  }
  const result = configSchema.safeParse(input, { reportInput: true })
  if (!result.success) problems.push(...formatIssues(result.error))
  if (problems.length > 0 || !result.success) throw new ConfigError(file, problems)
  const config = result.data
  // A relative data_dir is relative to the config file (as admin_token_file and error_images), so
  // the CLI finds the service's data from any working directory; without a file, to the working
  // directory. The same for KVW_DATA_DIR/VMCTL_DATA_DIR from the environment (a hand-run doctor
  // and the service agree whatever their working directories); from `.env` it was made absolute,
  // relative to the `.env` file, where it was read.
  if (!isAbsolute(config.data_dir)) config.data_dir = resolve(file === null ? '.' : dirname(file), config.data_dir)
  const vms = resolveVms(config)
  const seen = new Set<string>()
  vms.forEach((vm, i) => {
    if (seen.has(vm.name)) problems.push(`vms[${i - 1}].name: "${vm.name}" is listed twice (vm_name is the first VM)`)
    seen.add(vm.name)
  })
  vms.forEach((vm, i) => {
    if (vm.heartbeat_detector === 'adaptive' && vm.adaptive_min_timeout > vm.heartbeat_timeout) {
      problems.push(`${i === 0 ? '' : `vms[${i - 1}].`}adaptive_min_timeout: ${vm.adaptive_min_timeout} s is longer than heartbeat_timeout (${vm.heartbeat_timeout} s); the adaptive deadline lies between the two`)
    }
  })
  const owners = new Map<string, string>()
  for (const vm of vms) {
    for (const address of vm.guest_addresses) {
      const other = owners.get(address)
      if (other !== undefined) problems.push(`guest_addresses: ${address} is listed for both "${other}" and "${vm.name}"`)
      owners.set(address, vm.name)
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems)
  return { config, vms, file, warnings }
}

/** Applies KVW_ and VMCTL_ overrides; returns which variable set each key (`VMCTL_X (source)`). */
function applyEnv (input: Record<string, unknown>, env: NodeJS.ProcessEnv, problems: string[], warnings: string[], dotEnv: EvcDotEnv | null): Map<string, string> {
  const fromFile = { ...input }
  const setBy = new Map<string, string>()
  // VMCTL_ first (EVC's names, case-insensitive as in EVC; the real environment over .env), then
  // KVW_, which wins.
  const vmctl = new Map<string, { name: string, value: string, source: string }>()
  for (const [name, value] of Object.entries(dotEnv?.values ?? {})) vmctl.set(name.toUpperCase(), { name, value, source: `${dotEnv!.path}` })
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && /^VMCTL_/i.test(name)) vmctl.set(name.toUpperCase(), { name, value, source: 'environment' })
  }
  for (const [upper, { name, value, source }] of vmctl) {
    if (value === '') continue
    const suffix = upper.slice('VMCTL_'.length)
    const key = VMCTL_OVERRIDES[suffix]
    if (key === undefined) {
      const later = EVC_LATER_KEYS[suffix.toLowerCase()]
      warnings.push(later !== undefined
        ? `${name} (${source}): a setting of a later exhibition-vm-controller version, not read here (${later})`
        : `${name} (${source}): not a setting, not read (VMCTL_ names: ${Object.keys(VMCTL_OVERRIDES).join(', ')})`)
      continue
    }
    const ignored = EVC_IGNORED_KEYS[key]
    const schema = ignored?.schema ?? configSchema.shape[key as keyof typeof configSchema.shape]
    const coerced = coerceEnv(value, schema, `${name} (${source})`, problems)
    if (coerced === undefined) continue
    const before = fromFile[key]
    // A relative data_dir from `.env` is relative to that file's directory; from the environment it
    // stays relative here and is resolved with the file's own (parseConfig): the config file's directory.
    input[key] = key === 'data_dir' && dotEnv !== null && source === dotEnv.path ? resolve(dirname(dotEnv.path), String(coerced)) : coerced
    setBy.set(key, `${name} (${source})`)
    if (before !== undefined && ignored === undefined && JSON.stringify(before) !== JSON.stringify(coerced)) {
      warnings.push(`${name}=${value} (${source}) overrides ${key}: ${JSON.stringify(before)} in the config file (EVC v1.3.0 let the file win; here the environment does)`)
    }
  }
  for (const [suffix, key] of Object.entries(ENV_OVERRIDES)) {
    const name = `KVW_${suffix}`
    const value = env[name]
    if (value === undefined || value === '') continue
    const coerced = coerceEnv(value, configSchema.shape[key], `${name} (environment)`, problems)
    if (coerced !== undefined) input[key] = coerced
  }
  return setBy
}

/** Plain decimal numbers only: Number() would also read 0x10, 0b1, 1_0 or " 16 " (not what a technician means). */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/

function coerceEnv (value: string, schema: z.ZodType, name: string, problems: string[]): unknown {
  const probe = (v: unknown) => schema.safeParse(v).success
  if (probe(value)) return value
  if (/^(true|yes|on|1)$/i.test(value) && probe(true)) return true
  if (/^(false|no|off|0)$/i.test(value) && probe(false)) return false
  const n = DECIMAL.test(value) ? Number(value) : Number.NaN
  if (Number.isFinite(n) && probe(n)) return n
  problems.push(`${name}: ${JSON.stringify(value)}: ${envWhy(value, n, schema)}`)
  return undefined
}

/** Why an environment value does not fit: the schema's own words for the best reading of it. */
function envWhy (value: string, n: number, schema: z.ZodType): string {
  const wantsNumber = !schema.safeParse('x').success && schema.safeParse(1).success === true
  const wantsBoolean = schema.safeParse(true).success
  if (wantsBoolean) return 'expected true or false (also yes/no, on/off, 1/0)'
  if (!Number.isFinite(n) && wantsNumber) {
    return 'not a decimal number (write it in decimal, e.g. 15 or 0.5; hex, octal, binary and underscores are not read)'
  }
  const issue = schema.safeParse(Number.isFinite(n) ? n : value).error?.issues[0]
  return issue?.message ?? 'not valid for this key'
}

export function formatIssues (error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map((p) => typeof p === 'number' ? `[${p}]` : `.${String(p)}`).join('').replace(/^\./, '') : '(top level)'
    if (issue.code === 'unrecognized_keys') {
      return `${path === '(top level)' ? '' : path + '.'}${issue.keys.join(', ')}: unknown key${issue.keys.length > 1 ? 's' : ''} (a typo? see config.yaml for every key)`
    }
    return `${path}: ${issue.message}${shownValue(path, issue.input)}`
  })
}

/** ` (got …)` for the message, unless the value is secret (a token, a header) or too long to help. */
function shownValue (path: string, input: unknown): string {
  if (input === undefined || /token|headers|password/i.test(path)) return ''
  let text: string
  try {
    text = typeof input === 'number' && !Number.isFinite(input) ? String(input) : JSON.stringify(input)
  } catch {
    return ''
  }
  if (text === undefined || typeof input === 'object') return ''
  return ` (got ${text.length > 80 ? `${text.slice(0, 77)}...` : text})`
}

export function resolveVms (config: Config): VmConfig[] {
  const settings = Object.fromEntries(VM_SETTING_KEYS.map((key) => [key, config[key]])) as VmSettings
  const base = { ...settings, heartbeat_check_interval: config.heartbeat_check_interval }
  // guest_addresses name one VM's guests: never inherited, or every VM would claim the same guest.
  const extra = config.vms.map((vm) => {
    const defined = Object.fromEntries(Object.entries(vm).filter(([, v]) => v !== undefined))
    return { ...base, guest_addresses: [], ...defined, name: vm.name } as VmConfig
  })
  return [{ ...base, name: config.vm_name }, ...extra]
}
