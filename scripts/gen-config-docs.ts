// Writes docs/configuration.md from the one config schema (src/config/schema.ts): every key, its
// type, default and description, and its environment override (src/config/load.ts).
// Run: npx tsx scripts/gen-config-docs.ts   (test/docs.test.ts fails when the file is stale)
import { writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { z } from 'zod'
import { ENV_OVERRIDES, ENV_PREFIXES } from '../src/config/load.ts'
import { configSchema } from '../src/config/schema.ts'

export const CONFIG_DOCS_PATH = fileURLToPath(new URL('../docs/configuration.md', import.meta.url))

interface JsonSchema {
  type?: string | string[]
  description?: string
  default?: unknown
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  enum?: unknown[]
  const?: unknown
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  allOf?: JsonSchema[]
  additionalProperties?: JsonSchema | boolean
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minLength?: number
  maxLength?: number
  minItems?: number
  pattern?: string
  format?: string
  $ref?: string
  $defs?: Record<string, JsonSchema>
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER

function resolveRef (root: JsonSchema, s: JsonSchema): JsonSchema {
  if (s.$ref?.startsWith('#/$defs/')) return root.$defs?.[s.$ref.slice(8)] ?? s
  return s
}

/** The non-null alternative of an `anyOf: [X, {type: null}]`, and whether null is allowed. */
function unwrap (root: JsonSchema, s: JsonSchema): { schema: JsonSchema, nullable: boolean } {
  const r = resolveRef(root, s)
  const alternatives = r.anyOf ?? r.oneOf
  if (alternatives) {
    const others = alternatives.filter((a) => a.type !== 'null')
    if (others.length === 1) {
      const inner = unwrap(root, others[0]!)
      return { schema: { ...inner.schema, description: r.description ?? inner.schema.description, default: r.default ?? inner.schema.default }, nullable: others.length < alternatives.length }
    }
  }
  return { schema: r, nullable: false }
}

function typeOf (root: JsonSchema, s: JsonSchema): string {
  const { schema, nullable } = unwrap(root, s)
  let text: string
  if (schema.enum) text = schema.enum.map((v) => JSON.stringify(v)).join(' | ')
  else if (schema.const !== undefined) text = JSON.stringify(schema.const)
  else if (schema.anyOf ?? schema.oneOf) text = (schema.anyOf ?? schema.oneOf)!.map((a) => typeOf(root, a)).join(' | ')
  else if (schema.type === 'array') text = `list of ${schema.items ? typeOf(root, schema.items) : 'any'}`
  else if (schema.type === 'object' && !schema.properties && typeof schema.additionalProperties === 'object') text = `map of ${typeOf(root, schema.additionalProperties)}`
  else text = Array.isArray(schema.type) ? schema.type.join(' | ') : (schema.type ?? 'any')
  const bounds: string[] = []
  if (schema.minimum !== undefined) bounds.push(`≥ ${schema.minimum}`)
  if (schema.exclusiveMinimum !== undefined) bounds.push(`> ${schema.exclusiveMinimum}`)
  if (schema.maximum !== undefined && schema.maximum < MAX_SAFE) bounds.push(`≤ ${schema.maximum}`)
  if (schema.minLength !== undefined && schema.minLength > 1) bounds.push(`length ≥ ${schema.minLength}`)
  if (schema.minItems !== undefined && schema.minItems > 0) bounds.push(`at least ${schema.minItems}`)
  if (schema.format === 'uri') bounds.push('URL')
  if (bounds.length > 0) text += ` (${bounds.join(', ')})`
  return nullable ? `${text} or null` : text
}

function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

/** Parsed defaults that depend on the machine the docs are generated on: described, not shown. */
const MACHINE_DEFAULTS: Record<string, string> = { timezone: 'the system\'s time zone' }

/** Values after parsing an empty config: defaults the JSON Schema cannot show (behind a pipe). */
const PARSED_DEFAULTS = configSchema.parse({}) as Record<string, unknown>

function parsedDefault (path: string): unknown {
  if (path.includes('[]')) return undefined
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), PARSED_DEFAULTS)
}

function defaultOf (root: JsonSchema, s: JsonSchema, path: string): string {
  const { schema } = unwrap(root, s)
  const declared = s.default !== undefined ? s.default : schema.default
  if (declared === undefined && MACHINE_DEFAULTS[path]) return MACHINE_DEFAULTS[path]
  const d = declared !== undefined ? declared : parsedDefault(path)
  if (d === undefined) return '—'
  return `\`${cell(JSON.stringify(d)).replace(/\\\|/g, '|')}\``
}

function envOf (key: string): string {
  const names = Object.entries(ENV_OVERRIDES).filter(([, k]) => k === key).flatMap(([suffix]) => ENV_PREFIXES.map((p) => `\`${p}${suffix}\``))
  if (key === 'libvirt_uri') names.push('`LIBVIRT_DEFAULT_URI` (when the key is not set)')
  return names.length > 0 ? names.join(', ') : '—'
}

interface Section { title: string, prefix: string, rows: string[], intro?: string }

function walk (root: JsonSchema, object: JsonSchema, prefix: string, title: string, sections: Section[], intro?: string): void {
  const section: Section = { title, prefix, rows: [], ...(intro ? { intro } : {}) }
  sections.push(section)
  const topLevel = prefix === ''
  for (const [key, raw] of Object.entries(object.properties ?? {})) {
    const { schema } = unwrap(root, raw)
    const path = `${prefix}${key}`
    const description = raw.description ?? schema.description ?? ''
    const env = topLevel ? ` | ${envOf(key)}` : ''
    section.rows.push(`| \`${path}\` | ${cell(typeOf(root, raw))} | ${defaultOf(root, raw, path)}${env} | ${cell(description)} |`)
    if (schema.type === 'object' && schema.properties) {
      walk(root, schema, `${path}.`, `\`${path}\``, sections, description)
    } else if (schema.type === 'array' && schema.items) {
      const item = unwrap(root, schema.items).schema
      if (item.type === 'object' && item.properties) walk(root, item, `${path}[].`, `\`${path}[]\` (each entry)`, sections, description)
    }
  }
}

export function renderConfigDocs (): string {
  const root = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
  const sections: Section[] = []
  walk(root, root, '', 'Top level', sections)
  const out: string[] = [
    '<!-- GENERATED by scripts/gen-config-docs.ts from src/config/schema.ts. Do not edit: run `npx tsx scripts/gen-config-docs.ts`. -->',
    '# Configuration reference',
    '',
    'The service reads one YAML file: `--config FILE`, else `$KVW_CONFIG`, else `./config.yaml`',
    '(the systemd unit uses `/etc/kiosk-vm-watchdog/config.yaml`). A missing default file means',
    'all defaults. Unknown keys are errors (a typo must not silently fall back to a default);',
    'check a file with `kiosk-vm-watchdog check-config --config FILE`, or the whole host with',
    '`kiosk-vm-watchdog doctor`.',
    '',
    'Times are in seconds unless a key says otherwise. Keys of exhibition-vm-controller keep their',
    'names and meaning (see [migration.md](migration.md)); its keys that have no use here are',
    'accepted and ignored. `vm_startup_heartbeat_delay` stands in for `startup_grace` when that is',
    'not set.',
    '',
    `Environment variables override the file: each listed key can be set as ${ENV_PREFIXES.map((p) => `\`${p}KEY\``).join(' or ')}`,
    `(\`${ENV_PREFIXES[0]}\` wins). Values are parsed as the key's type (\`true\`/\`false\`, numbers).`,
    'A relative `data_dir` is relative to the config file\'s directory, whether it comes from the file',
    'or the environment (without a config file: the working directory); from EVC\'s `.env`, to the',
    '`.env` file\'s directory. So the service and a `doctor` run by hand from elsewhere agree.',
    ''
  ]
  for (const section of sections) {
    const topLevel = section.prefix === ''
    out.push(`## ${section.title}`, '')
    if (section.intro && !topLevel) out.push(section.intro, '')
    out.push(topLevel ? '| key | type | default | environment | description |' : '| key | type | default | description |')
    out.push(topLevel ? '| --- | --- | --- | --- | --- |' : '| --- | --- | --- | --- |')
    out.push(...section.rows, '')
  }
  return out.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(CONFIG_DOCS_PATH, renderConfigDocs())
  process.stdout.write(`wrote ${CONFIG_DOCS_PATH}\n`)
}
