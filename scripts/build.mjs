// The production build (`npm run build`, after the type check): src/cli.ts bundled by esbuild
// into dist/cli.js, so the service loads a few files instead of ~200 modules one by one (start
// time, issue 15). What src/ imports lazily (`import()`: the doctor) stays a lazy chunk in dist/.
//   node scripts/build.mjs [--outdir DIR]        (default: dist/ of this checkout; emptied first)
// Plain JS so it runs with node alone.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({ options: { outdir: { type: 'string' } } })
// Resolved here once: esbuild and rmSync must agree on it, and it is emptied before the build.
const outdir = resolve(values.outdir ?? join(root, 'dist'))
if (resolve(root) === outdir || existsSync(join(outdir, 'package.json'))) throw new Error(`build: --outdir ${outdir} holds a package.json: not an output directory to empty`)

// Loaded from node_modules at run time, not bundled, because they find files of their own on disk
// or must stay one copy shared with such a package:
const external = [
  'koffi', // a native .node file, picked per platform
  'pino', 'pino-pretty', // transports run worker files by path (thread-stream)
  '@fastify/swagger-ui', // serves its static/ directory, found by __dirname
  '@fastify/static', // swagger-ui's own dependency: one copy for it and the dashboard
  '@fastify/swagger', 'yaml', // reads its package.json by __dirname; yaml: one copy shared with it
  'node-cron' // its background-task daemon file, found from import.meta.url
]
// scripts/install.sh ships the production dependencies only: an external must be one of them.
const { dependencies } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))
for (const name of external) {
  if (!(name in dependencies)) throw new Error(`build: external ${name} is not in package.json's dependencies`)
}

rmSync(outdir, { recursive: true, force: true })
await build({
  absWorkingDir: root,
  entryPoints: ['src/cli.ts'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunk-[hash]',
  // Whitespace and comments out, names kept (stack traces name the functions): the source text
  // stays in the heap for lazy compilation, and one character beyond Latin-1 in a kept comment
  // makes V8 hold the whole file as UTF-16 (twice the bytes; checked below). License files ship
  // in node_modules/.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  // Maps without the sources' text: with `node --enable-source-maps` a stack trace names
  // src/*.ts lines (install.sh ships them; the unit does not turn them on: they cost memory).
  sourcemap: true,
  sourcesContent: false,
  external,
  // CommonJS modules inside an ESM bundle call require() for node's built-ins: give them one.
  banner: { js: "import { createRequire as __kvwCreateRequire } from 'node:module'; const require = __kvwCreateRequire(import.meta.url);" },
  logLevel: 'warning'
})
for (const file of readdirSync(outdir).filter((f) => f.endsWith('.js'))) {
  if (/[\u0100-\uffff]/.test(readFileSync(join(outdir, file), 'utf8'))) throw new Error(`build: ${file} has characters beyond Latin-1: V8 would hold it as UTF-16, twice the bytes`)
}
