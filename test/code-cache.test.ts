// runWithCodeCache: dist/cli.js runs the service bundle through it (src/boot.ts). A small
// CommonJS file stands in for the bundle and reports itself, so a test sees that the file really
// ran, and which version of it. The cache is tried in fresh processes, as starts are: within one
// process V8 reuses what it compiled before and never reads the cache file at all.
import t from 'tap'
import type { Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CODE_CACHE_KEY, runWithCodeCache, startedCodeCache } from '../src/code-cache.ts'

interface Report { filename: string, dirname: string, sibling: string, strict: boolean, handleState: string | undefined, answer: number }
const REPORTS = Symbol.for('kvw-test.code-cache-reports')
const reports = (): Report[] => ((globalThis as Record<symbol, Report[]>)[REPORTS] ??= [])

/** A CommonJS file as the bundle is one: module, require, __filename, __dirname; "use strict". */
function bundleSource (answer: number): string {
  return `'use strict';
const sibling = require('./sibling.cjs')
let strict = false
try { undeclared = 1 } catch { strict = true }
const handle = globalThis[Symbol.for('kiosk-vm-watchdog.code-cache')]
globalThis[Symbol.for('kvw-test.code-cache-reports')].push({ filename: __filename, dirname: __dirname, sibling, strict, handleState: handle && handle.state, answer: ${answer} })
if (process.env.KVW_TEST_CHILD) console.log(JSON.stringify({ ran: ${answer} }))
module.exports = { answer: ${answer} }
function unused${answer} () { return ${'1 + '.repeat(200)}1 }
`
}

function setup (t: Test): { dir: string, bundle: string, cacheDir: string } {
  const dir = t.testdir({ 'sibling.cjs': "module.exports = 'from beside the bundle'\n" })
  const bundle = join(dir, 'service.cjs')
  writeFileSync(bundle, bundleSource(1))
  const cacheDir = join(dir, 'cache')
  mkdirSync(cacheDir)
  t.teardown(() => { delete (globalThis as Record<symbol, unknown>)[CODE_CACHE_KEY] })
  return { dir, bundle, cacheDir }
}

interface Start { state: string, problem: string | null, file: string | null, ran: number | undefined, saved?: string }

/** A start in a fresh process: runs the bundle with the cache, then (SAVE) saves it as server.ts does. */
function start (t: Test, bundle: string, cacheDir: string, save = true): Start {
  const code = `import { runWithCodeCache } from ${JSON.stringify(join(import.meta.dirname, '../src/code-cache.ts'))}
globalThis[Symbol.for('kvw-test.code-cache-reports')] = []
const handle = runWithCodeCache(process.env.BUNDLE, process.env.CACHE_DIR)
const saved = process.env.SAVE === '1' ? await handle.save().catch((err) => 'error ' + err.code) : undefined
console.log(JSON.stringify({ state: handle.state, problem: handle.problem, file: handle.file, saved }))`
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '', KVW_TEST_CHILD: '1', BUNDLE: bundle, CACHE_DIR: cacheDir, SAVE: save ? '1' : '0' }
  })
  t.equal(r.status, 0, 'the start exits 0', { stderr: r.stderr })
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  return { ...(lines.at(-1) as Omit<Start, 'ran'>), ran: lines.find((l) => 'ran' in l)?.['ran'] as number | undefined }
}

const cacheFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.v8cache')).sort()
const partials = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.partial'))

t.test('runs the file as node\'s CommonJS loader would, and leaves the handle before it runs', async (t) => {
  const { dir, bundle } = setup(t)
  const before = reports().length
  const handle = runWithCodeCache(bundle, undefined)
  const report = reports()[before]!
  t.equal(reports().length, before + 1, 'the file ran once')
  t.equal(report.filename, bundle)
  t.equal(report.dirname, dir)
  t.equal(report.sibling, 'from beside the bundle', 'require() resolves from the bundle\'s directory')
  t.ok(report.strict, 'its "use strict" holds')
  t.equal(report.handleState, 'off', 'the running file already sees the handle (server.ts logs it while starting)')
  t.equal(startedCodeCache(), handle)
  t.same({ state: handle.state, file: handle.file, problem: handle.problem }, { state: 'off', file: null, problem: null }, 'no cache directory: off')
  t.equal(await handle.save(), 'unchanged', 'nothing to save when off')
})

t.test('saved once, used by the next start; nothing saved again', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const first = start(t, bundle, cacheDir)
  t.same([first.state, first.ran, first.saved], ['missing', 1, 'saved'])
  t.same(cacheFiles(cacheDir), [first.file!.slice(cacheDir.length + 1)], 'one cache file')
  t.equal(statSync(first.file!).mode & 0o777, 0o600, 'only the service\'s user reads it')
  t.same(partials(cacheDir), [], 'no partial file left')
  const written = statSync(first.file!).mtimeMs

  const second = start(t, bundle, cacheDir)
  t.same([second.state, second.ran, second.saved], ['used', 1, 'unchanged'], 'V8 accepted the bytecode, the file ran, and nothing was written')
  t.equal(second.file, first.file)
  t.equal(statSync(second.file!).mtimeMs, written)
})

t.test('a changed bundle of the same length gets its own cache; the old one goes at the next save', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const old = start(t, bundle, cacheDir)
  // V8 checks only the source's length: with the old bytecode this file would run as the old one.
  const changed = bundleSource(2)
  t.equal(changed.length, readFileSync(bundle, 'utf8').length, 'same length')
  writeFileSync(bundle, changed)
  const next = start(t, bundle, cacheDir, false)
  t.same([next.state, next.ran], ['missing', 2], 'not the old bundle\'s cache: the new file ran')
  t.not(next.file, old.file)
  t.same(cacheFiles(cacheDir), [old.file!.slice(cacheDir.length + 1)], 'the old cache stays until a save')
  t.equal(start(t, bundle, cacheDir).saved, 'saved')
  t.same(cacheFiles(cacheDir), [next.file!.slice(cacheDir.length + 1)], 'then it is removed')
})

t.test('bytecode V8 refuses: rejected, the file still runs, and the next save replaces it', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const first = start(t, bundle, cacheDir)
  writeFileSync(first.file!, Buffer.alloc(4096, 0x5a))
  const second = start(t, bundle, cacheDir)
  t.same([second.state, second.ran, second.saved], ['rejected', 1, 'saved'], 'the file ran, compiled from its source, and the cache was written again')
  t.same([start(t, bundle, cacheDir).state], ['used'], 'the start after that uses it')
})

t.test('a cache file that cannot be read: named in problem, the file still runs, the save fails', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const probe = start(t, bundle, cacheDir, false)
  mkdirSync(probe.file!) // a directory where the file should be: EISDIR
  const r = start(t, bundle, cacheDir)
  t.same([r.state, r.ran], ['missing', 1])
  t.match(r.problem, /^cannot read .*service-[0-9a-f]{32}\.v8cache: EISDIR/)
  t.equal(r.saved, 'error EISDIR', 'saving over it fails with the file system\'s error, for server.ts to log')
  t.same(partials(cacheDir), [], 'and leaves no partial file')
})

t.test('a cache directory that does not exist: the start is not affected, the save fails', async (t) => {
  const { bundle, dir } = setup(t)
  const r = start(t, bundle, join(dir, 'absent'))
  t.same([r.state, r.ran, r.problem, r.saved], ['missing', 1, null, 'error ENOENT'], 'no cache yet is not a problem')
})
