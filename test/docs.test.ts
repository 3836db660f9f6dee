// docs/configuration.md is generated from the config schema; this fails when someone changed the
// schema (or load.ts's environment overrides) without regenerating it.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { CONFIG_DOCS_PATH, renderConfigDocs } from '../scripts/gen-config-docs.ts'
import { ENV_OVERRIDES } from '../src/config/load.ts'
import { configSchema } from '../src/config/schema.ts'

t.test('docs/configuration.md is up to date with src/config/schema.ts', async (t) => {
  const expected = renderConfigDocs()
  const actual = readFileSync(CONFIG_DOCS_PATH, 'utf8')
  t.equal(actual, expected, 'docs/configuration.md is stale: run npx tsx scripts/gen-config-docs.ts')
})

t.test('the reference names every key and every environment override', async (t) => {
  const text = renderConfigDocs()
  for (const key of Object.keys(configSchema.shape)) t.match(text, `| \`${key}\` |`, key)
  for (const [suffix, key] of Object.entries(ENV_OVERRIDES)) t.match(text, new RegExp(`\\| \`${key}\` \\|[^\\n]*\`KVW_${suffix}\`, \`VMCTL_${suffix}\``), `${key} <- KVW_${suffix}`)
  t.match(text, '| `security.admin_token` |')
  t.match(text, '| `vms[].name` |')
  t.notMatch(text, /\\\\\|/, 'no doubled escapes in tables')
})
