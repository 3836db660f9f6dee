// The layers of src/ (docs/architecture.md, "Layers"): every import, type imports included, points
// to its own folder or to a row below; only the entry points in the top row import each other.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const SRC = fileURLToPath(new URL('../src/', import.meta.url))

/** Top to bottom; a unit is a folder of src/ or a file at its top level. */
const LAYERS = [
  ['app.ts', 'server.ts', 'cli.ts', 'boot.ts', 'logger.ts'],
  ['routes'],
  ['plugins'],
  ['doctor'],
  ['heartbeat', 'snapshot', 'alerts', 'availability', 'code-cache.ts'],
  ['config'],
  ['schedule', 'screen', 'store', 'systemd'],
  ['libvirt'],
  ['ports', 'net', 'names.ts', 'limits.ts', 'errors.ts', 'version.ts']
]

function unitOf (file: string): string {
  return relative(SRC, file).split('/')[0]!
}

function rowOf (unit: string): number {
  return LAYERS.findIndex((row) => row.includes(unit))
}

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

t.test('every unit of src/ has a row', async (t) => {
  const units = [...new Set(sources(SRC).map(unitOf))]
  t.same(units.filter((u) => rowOf(u) < 0), [], 'units missing from LAYERS (add them to the test and to docs/architecture.md)')
})

t.test('imports point down', async (t) => {
  const upward: string[] = []
  for (const file of sources(SRC)) {
    const from = unitOf(file)
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const to = unitOf(resolve(dirname(file), m[1]!))
      if (to === from) continue
      const [a, b] = [rowOf(from), rowOf(to)]
      if (b > a || (a === 0 && b === 0)) continue
      upward.push(`${relative(SRC, file)} -> ${m[1]} (${from} is in row ${a}, ${to} in row ${b})`)
    }
  }
  t.same(upward, [], 'no import points up or sideways')
})
