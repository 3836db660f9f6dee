// Reads config.yaml once, applies environment overrides and validates the result with the one
// schema. Everything that goes wrong becomes a ConfigError whose lines name the key path.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
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

export interface LoadedConfig {
  config: Config
  /** Every watched VM, the default one first, with top-level values filled in. */
  vms: VmConfig[]
  /** The file that was read, or null when only defaults and the environment were used. */
  file: string | null
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
  return readAdminTokenFile(parseConfig(raw, env, file))
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

export function parseConfig (raw: unknown, env: NodeJS.ProcessEnv, file: string | null = null): LoadedConfig {
  const input: Record<string, unknown> = { ...(raw as Record<string, unknown>) }
  const problems: string[] = []
  applyEnv(input, env, problems)
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
  return { config, vms, file }
}

function applyEnv (input: Record<string, unknown>, env: NodeJS.ProcessEnv, problems: string[]): void {
  for (const prefix of [...ENV_PREFIXES].reverse()) { // KVW_ wins over VMCTL_
    for (const [suffix, key] of Object.entries(ENV_OVERRIDES)) {
      const value = env[prefix + suffix]
      if (value === undefined || value === '') continue
      const current = configSchema.shape[key]
      input[key] = coerceEnv(value, current, `${prefix}${suffix}`, problems)
    }
  }
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
  problems.push(`${name} (environment): ${JSON.stringify(value)}: ${envWhy(value, n, schema)}`)
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
