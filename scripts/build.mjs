// The production build (`npm run build`, after the type check): src/cli.ts bundled by esbuild
// into dist/service.cjs, so the service loads one file instead of ~200 modules one by one (start
// time, issue 15), and dist/cli.js (src/boot.ts) that runs it with V8's code cache.
//   node scripts/build.mjs [--outdir DIR]        (default: dist/ of this checkout; emptied first)
// Plain JS so it runs with node alone.
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
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
  'node-cron' // its background-task daemon file, found beside its own (__filename in the CommonJS build)
]
// scripts/install.sh ships the production dependencies only: an external must be one of them.
const { dependencies } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))
for (const name of external) {
  if (!(name in dependencies)) throw new Error(`build: external ${name} is not in package.json's dependencies`)
}

// zod re-exports its ~40 locales as `z.locales` (from classic, core and mini): ≈ 290 KiB of the
// bundle, parsed at every start. The service only speaks English, which zod imports directly
// (zod/v4/classic/schemas.js `import en from "../locales/en.js"`), so that re-export resolves to
// an empty module and `z.locales` is `{}` in dist/.
// Refused rather than broken in production only: src/ asking for zod's locales (tests run src/,
// where they exist): `z.locales.de()`, `core.locales`, `import { locales } from 'zod'`, 'zod/…/locales'.
const usesZodLocales = /\.\s*locales\b|\{[^}]*\blocales\b[^}]*\}\s*from\s*['"]zod|['"]zod[^'"]*\/locales\b/
for (const file of readdirSync(join(root, 'src'), { recursive: true }).filter((f) => f.endsWith('.ts'))) {
  const text = readFileSync(join(root, 'src', file), 'utf8')
  const found = usesZodLocales.exec(text)
  if (found) throw new Error(`build: src/${file}:${text.slice(0, found.index).split('\n').length} uses zod's locales, which the bundle leaves out (zodLocalesOut)`)
}
const zodLocalesOut = {
  name: 'zod-locales-out',
  setup (pluginBuild) {
    pluginBuild.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${sep}zod${sep}v4${sep}`) ? { path: 'zod-locales', namespace: 'kvw-empty' } : undefined)
    pluginBuild.onLoad({ filter: /^/, namespace: 'kvw-empty' }, () => ({ contents: 'export {}', loader: 'js' }))
  }
}

rmSync(outdir, { recursive: true, force: true })
// Whitespace and comments out, names kept (stack traces name the functions): the source text
// stays in the heap for lazy compilation, and one character beyond Latin-1 in a kept comment
// makes V8 hold the whole file as UTF-16 (twice the bytes; checked below). License files ship
// in node_modules/. Maps without the sources' text: with `node --enable-source-maps` a stack
// trace names src/*.ts lines (install.sh ships them; the unit does not turn them on: they cost memory).
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  sourcemap: true,
  sourcesContent: false,
  logLevel: 'warning'
}
// The service: one CommonJS file, because node 20 keeps V8's code cache only for scripts it
// compiles through node:vm (src/code-cache.ts); the doctor, imported on first use, is in it too
// (evaluated only when imported). import.meta.url is the file's URL, as in src/.
const serviceBuild = await build({
  ...common,
  entryPoints: ['src/cli.ts'],
  outfile: join(outdir, 'service.cjs'),
  format: 'cjs',
  external,
  plugins: [zodLocalesOut],
  define: { 'import.meta.url': '__kvwImportMetaUrl' },
  // "use strict" first: esbuild's own would come after the banner, no longer a directive.
  banner: { js: "'use strict'; var __kvwImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" }
})
// A warning here is code that would behave otherwise in dist/ than from src/ (e.g. an
// import.meta.dirname, which CommonJS output leaves empty): printed above, and refused.
if (serviceBuild.warnings.length > 0) throw new Error(`build: esbuild warned about src/ in CommonJS output (${serviceBuild.warnings.length}, above)`)
// src/cli.ts's "#!" line, kept by esbuild, is not JavaScript inside the loader's function wrapper:
// a comment of the same length instead (the source map's lines and columns stay right).
const service = join(outdir, 'service.cjs')
const serviceText = readFileSync(service, 'utf8').replace(/^#!/, '//')
// node:vm runs the bundle without a module loader: an import() left in it (an external, a
// computed name) would work from src/ and in tests, and throw in production only.
if (/\bimport\(/.test(serviceText)) throw new Error('build: dist/service.cjs has an import(): node:vm cannot load it (src/code-cache.ts); use require() or bundle the module')
writeFileSync(service, serviceText)
// The entry, dist/cli.js: runs service.cjs with the code cache (src/boot.ts).
const bootBuild = await build({
  ...common,
  entryPoints: ['src/boot.ts'],
  outfile: join(outdir, 'cli.js'),
  format: 'esm'
})
if (bootBuild.warnings.length > 0) throw new Error(`build: esbuild warned about src/boot.ts (${bootBuild.warnings.length}, above)`)
chmodSync(join(outdir, 'cli.js'), 0o755)
for (const file of readdirSync(outdir).filter((f) => /\.c?js$/.test(f))) {
  if (/[\u0100-\uffff]/.test(readFileSync(join(outdir, file), 'utf8'))) throw new Error(`build: ${file} has characters beyond Latin-1: V8 would hold it as UTF-16, twice the bytes`)
}
