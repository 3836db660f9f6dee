// runWithCodeCache: dist/cli.js runs the service bundle through it (src/boot.ts). A small
// CommonJS file stands in for the bundle and reports itself, so a test sees that the file really
// ran, and which version of it. The cache is tried in fresh processes, as starts are: within one
// process V8 reuses what it compiled before and never reads the cache file at all.
import t from 'tap'
import type { Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CODE_CACHE_KEY, runWithCodeCache, scheduleCodeCacheSave, startedCodeCache, type CodeCache, type CodeCacheState } from '../src/code-cache.ts'
import { REPLACE_TMP } from '../src/store/fs.ts'
import { FakeClock } from './helpers/fake-clock.ts'

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
function start (t: Test, bundle: string, cacheDir: string, save = true, nodeFlags: string[] = []): Start {
  const code = `import { runWithCodeCache } from ${JSON.stringify(join(import.meta.dirname, '../src/code-cache.ts'))}
globalThis[Symbol.for('kvw-test.code-cache-reports')] = []
const handle = runWithCodeCache(process.env.BUNDLE, process.env.CACHE_DIR)
const saved = process.env.SAVE === '1' ? await handle.save().catch((err) => 'error ' + err.code) : undefined
console.log(JSON.stringify({ state: handle.state, problem: handle.problem, file: handle.file, saved }))`
  const r = spawnSync(process.execPath, [...nodeFlags, '--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '', KVW_TEST_CHILD: '1', BUNDLE: bundle, CACHE_DIR: cacheDir, SAVE: save ? '1' : '0' }
  })
  t.same([r.status, r.signal], [0, null], 'the start exits 0', { stderr: r.stderr })
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  return { ...(lines.at(-1) as Omit<Start, 'ran'>), ran: lines.find((l) => 'ran' in l)?.['ran'] as number | undefined }
}

const cacheFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.v8cache')).sort()
/** replaceFile's temporary files (TARGET.tmp-PID-N). */
const partials = (dir: string): string[] => readdirSync(dir).filter((f) => REPLACE_TMP.test(f))

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

t.test('a save removes partial files of processes that are gone, not of one still writing', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const gone = spawnSync('true').pid!
  const writing = join(cacheDir, `service-${'a'.repeat(32)}.v8cache.tmp-${process.pid}-1`)
  const abandoned = join(cacheDir, `service-${'b'.repeat(32)}.v8cache.tmp-${gone}-1`)
  writeFileSync(writing, 'x')
  writeFileSync(abandoned, 'x')
  t.equal(start(t, bundle, cacheDir).saved, 'saved')
  t.same(partials(cacheDir), [writing.slice(cacheDir.length + 1)], 'the living process\'s partial file stays, the dead one\'s is gone')
})

t.test('V8 itself checks only the length: the cache of another source of the same length would run as that source', async (t) => {
  // Why the file name carries the source's hash: this is what V8 does with a cache it is handed.
  const { bundle, cacheDir } = setup(t)
  const old = start(t, bundle, cacheDir)
  writeFileSync(bundle, bundleSource(2))
  const probe = start(t, bundle, cacheDir, false)
  copyFileSync(old.file!, probe.file!)
  const fooled = start(t, bundle, cacheDir, false)
  t.same([fooled.state, fooled.ran], ['used', 1], 'V8 accepted the old bytecode and ran the old code for the new file')
})

t.test('a damaged cache file: rejected before V8 sees it, the file runs from its source, and it is saved again', async (t) => {
  const { bundle, cacheDir } = setup(t)
  const first = start(t, bundle, cacheDir)
  const good = readFileSync(first.file!)
  // V8 (release builds) does not checksum the data: handed these bytes it crashes the process.
  const flipped = Buffer.from(good)
  for (let i = Math.floor(flipped.length / 2); i < flipped.length / 2 + 64; i++) flipped[i]! ^= 0xff
  for (const [what, bytes] of [['bytes flipped in the middle', flipped], ['cut short', good.subarray(0, good.length - 100)], ['empty', Buffer.alloc(0)]] as const) {
    writeFileSync(first.file!, bytes)
    const r = start(t, bundle, cacheDir)
    t.same([r.state, r.ran, r.saved], ['rejected', 1, 'saved'], `${what}: rejected, the file ran, the cache written again`)
    t.match(r.problem, /is damaged \(its checksum does not match\)/)
    t.equal(start(t, bundle, cacheDir, false).state, 'used', `${what}: the next start uses the new one`)
  }
})

t.test('bytecode V8 refuses (other V8 flags): rejected, the file still runs, and the next save replaces it', async (t) => {
  const { bundle, cacheDir } = setup(t)
  start(t, bundle, cacheDir)
  const other = start(t, bundle, cacheDir, true, ['--max-old-space-size=97'])
  t.same([other.state, other.ran, other.saved, other.problem], ['rejected', 1, 'saved', null], 'the file ran, compiled from its source, and the cache was written again')
  t.equal(start(t, bundle, cacheDir, false, ['--max-old-space-size=97']).state, 'used', 'the start after that uses it')
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

t.test('a cache directory that is missing, others may write, or is another user\'s: off, said why, the file runs', async (t) => {
  const { bundle, dir, cacheDir } = setup(t)
  const absent = start(t, bundle, join(dir, 'absent'))
  t.same([absent.state, absent.ran, absent.saved, absent.file], ['off', 1, 'unchanged', null])
  t.match(absent.problem, /cache directory .*absent: ENOENT/)
  chmodSync(cacheDir, 0o777)
  const open = start(t, bundle, cacheDir)
  t.same([open.state, open.ran, open.saved], ['off', 1, 'unchanged'])
  t.match(open.problem, /may be written by others \(mode 777\)/)
  t.same(cacheFiles(cacheDir), [], 'nothing read from it or written to it')
  chmodSync(cacheDir, 0o700)
  if (process.getuid?.() === 0) {
    chownSync(cacheDir, 65534, 65534)
    const foreign = start(t, bundle, cacheDir)
    t.same([foreign.state, foreign.ran], ['off', 1])
    t.match(foreign.problem, /belongs to uid 65534, not to this service \(uid 0\)/)
  }
})

t.test('scheduleCodeCacheSave: saves once, AFTER ms after the start, logs the outcome; nothing for a used or off cache; cancelled on close', async (t) => {
  const cache = (state: CodeCacheState, outcome: Error | null = null) => {
    const saves: number[] = []
    const handle: CodeCache = {
      state,
      file: '/var/cache/kvw/service-x.v8cache',
      problem: null,
      save: async () => { saves.push(clock.now()); if (outcome !== null) throw outcome; return 'saved' }
    }
    return { handle, saves }
  }
  const clock = new FakeClock(1_000_000)
  const lines: string[] = []
  const log = { info: (_: object, msg: string) => { lines.push(`info ${msg}`) }, warn: (_: object, msg: string) => { lines.push(`warn ${msg}`) } }
  const settle = async () => { for (let i = 0; i < 5; i++) await Promise.resolve() }

  const missing = cache('missing')
  scheduleCodeCacheSave(missing.handle, clock, log, 3000)
  clock.advance(2999)
  await settle()
  t.same(missing.saves, [], 'not before')
  clock.advance(1)
  await settle()
  t.same(missing.saves, [1_003_000], 'saved 3 s after')
  t.same(lines, ['info code cache saved: the next start compiles less'])
  clock.advance(60_000)
  t.equal(missing.saves.length, 1, 'once')

  for (const state of ['used', 'off'] as const) {
    const c = cache(state)
    scheduleCodeCacheSave(c.handle, clock, log, 3000)
    clock.advance(10_000)
    await settle()
    t.same(c.saves, [], `nothing to save when ${state}`)
  }

  lines.length = 0
  const failing = cache('rejected', Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }))
  scheduleCodeCacheSave(failing.handle, clock, log, 3000)
  clock.advance(3000)
  await settle()
  t.same(lines, ['warn code cache not saved (the next start is slower, nothing else changes): ENOSPC: no space left on device'])

  const closed = cache('missing')
  const cancel = scheduleCodeCacheSave(closed.handle, clock, log, 3000)
  clock.advance(1000)
  cancel()
  clock.advance(10_000)
  await settle()
  t.same(closed.saves, [], 'a service closed before the save saves nothing')
})
