// Outside src/: the real-guest rig in harness/ is shared by test/e2e and bench/, so neither
// bench/ nor harness/ reaches into test/, and harness/ does not reach into bench/ (harness/README.md).
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

/** Relative imports of the .ts files under `folder` that land in one of `forbidden` (top-level folders). */
function crossings (folder: string, forbidden: string[]): string[] {
  const found: string[] = []
  for (const file of sources(join(ROOT, folder))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const top = relative(ROOT, resolve(dirname(file), m[1]!)).split('/')[0]!
      if (forbidden.includes(top)) found.push(`${relative(ROOT, file)} -> ${m[1]}`)
    }
  }
  return found
}

t.test('bench/ imports neither test/ nor anything that does', async (t) => {
  t.same(crossings('bench', ['test']), [])
})

t.test('harness/ imports only src/ and itself', async (t) => {
  t.same(crossings('harness', ['test', 'bench', 'scripts']), [])
})

t.test('test/e2e takes the rig from harness/', async (t) => {
  const e2e = sources(join(ROOT, 'test', 'e2e')).filter((f) => f.endsWith('.test.ts'))
  t.ok(e2e.length > 0)
  const usesRig = e2e.filter((f) => readFileSync(f, 'utf8').includes("from '../../harness/"))
  t.same(usesRig.map((f) => relative(ROOT, f)), e2e.map((f) => relative(ROOT, f)), 'every e2e test file imports harness/')
})
