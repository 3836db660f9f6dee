// V8's code cache for the production bundle (start time, issue 15). dist/cli.js (src/boot.ts)
// compiles dist/service.cjs with the bytecode V8 saved at an earlier start instead of parsing and
// compiling it all again (bench/README.md has the figures). Node 22 has this built in
// (module.enableCompileCache); node 20 keeps a code cache only for node:vm scripts, hence this file.
//
// What V8 does not check, this file does, because V8 runs whatever bytecode it is given:
// - V8 compares only the source's length: the file's name carries a SHA-256 of the exact source
//   compiled and of the node binary (version, build, file), so another bundle never finds it.
// - V8 (release builds) does not checksum the data: a damaged file can crash the process before
//   its first log line, at every start. Each file starts with the SHA-256 of its data, checked
//   before V8 sees it, and is written whole or not at all (the store's replaceFile).
// - Only a directory of this user's that no one else may write is used (systemd's CacheDirectory=,
//   mode 0700): bytecode found there runs as this service.
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { readdir, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Script } from 'node:vm'
import type { Log, TimerPort } from './ports/index.ts'
import { REPLACE_TMP, replaceFile } from './store/fs.ts'

/**
 * What this start did: `used` (the saved bytecode was accepted), `missing` (none saved yet for
 * this bundle and node), `rejected` (damaged, or refused by V8: other V8 flags), `off` (no usable
 * cache directory).
 */
export type CodeCacheState = 'used' | 'missing' | 'rejected' | 'off'

export interface CodeCache {
  readonly state: CodeCacheState
  /** The cache file of this bundle and node, or null when off. */
  readonly file: string | null
  /** Why the cache could not be used (beyond "none saved yet"), for the start's log line. */
  readonly problem: string | null
  /**
   * Writes the bytecode compiled so far (call it once the service is up: functions compiled while
   * starting are included) and removes the files of other bundles or nodes. Nothing to do when
   * the cache was used or is off. Rejects with the file system's error.
   */
  save: () => Promise<'saved' | 'unchanged'>
}

/** Where boot.ts leaves the handle for server.ts (two bundles: a module-level variable would be two). */
export const CODE_CACHE_KEY = Symbol.for('kiosk-vm-watchdog.code-cache')

/** The handle boot.ts left, or undefined when the service runs from src/ (tsx, tests) or not through boot.ts. */
export function startedCodeCache (): CodeCache | undefined {
  return (globalThis as Record<symbol, CodeCache | undefined>)[CODE_CACHE_KEY]
}

// The wrapper of node's CommonJS loader, opened on the file's first line: the source map's lines stay right.
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) {'
const WRAP_TAIL = '\n})'
const PREFIX = 'service-'
const SUFFIX = '.v8cache'
const SUM_BYTES = 32

const sha256 = (...parts: Array<string | Buffer>): Buffer => {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(part)
  return hash.digest()
}

/** The node binary as V8's bytecode depends on it: a rebuilt node of the same version is another one. */
function nodeIdentity (): string {
  const binary = statSync(process.execPath)
  return JSON.stringify([process.versions, process.arch, binary.size, binary.mtimeMs])
}

/** A temporary file of replaceFile's whose process is gone (it died while saving), by the pid in its name. */
function abandonedPartial (name: string): boolean {
  const pid = Number(REPLACE_TMP.exec(name)?.[1])
  if (!Number.isInteger(pid) || pid <= 0) return true
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** Null when DIR may hold the cache; else why not. */
function unusableDirectory (dir: string): string | null {
  let info
  try {
    info = statSync(dir)
  } catch (err) {
    return `cache directory ${dir}: ${(err as Error).message}`
  }
  if (!info.isDirectory()) return `cache directory ${dir} is not a directory`
  // The effective uid: the one this process creates files as.
  if (info.uid !== process.geteuid?.()) return `cache directory ${dir} belongs to uid ${info.uid}, not to this service (uid ${process.geteuid?.()})`
  if ((info.mode & 0o022) !== 0) return `cache directory ${dir} may be written by others (mode ${(info.mode & 0o777).toString(8)})`
  return null
}

/**
 * Runs the CommonJS file `bundle` (as node's loader would: module, exports, require, __filename,
 * __dirname), compiled with its cache from `cacheDir` when there is a sound one, and returns what
 * happened. `cacheDir` undefined or '' turns the cache off; the file runs in every case.
 */
export function runWithCodeCache (bundle: string, cacheDir: string | undefined): CodeCache {
  const bytes = readFileSync(bundle)
  const source = `${WRAP_HEAD}${bytes.toString('utf8')}${WRAP_TAIL}`
  let problem: string | null = null
  let file: string | null = null
  if (cacheDir !== undefined && cacheDir !== '') {
    problem = unusableDirectory(cacheDir)
    if (problem === null) {
      try {
        // The same text as `source`, hashed as bytes (≈ 3 ms less than re-encoding the string).
        file = join(cacheDir, `${PREFIX}${sha256(WRAP_HEAD, bytes, WRAP_TAIL, nodeIdentity()).toString('hex').slice(0, 32)}${SUFFIX}`)
      } catch (err) {
        problem = `cannot tell which node runs (${process.execPath}): ${(err as Error).message}`
      }
    }
  }
  let cachedData: Buffer | undefined
  let damaged = false
  if (file !== null) {
    try {
      const stored = readFileSync(file)
      const data = stored.subarray(SUM_BYTES)
      if (stored.length > SUM_BYTES && sha256(data).equals(stored.subarray(0, SUM_BYTES))) cachedData = data
      else {
        damaged = true
        problem = `${file} is damaged (its checksum does not match): compiled from the source, saved again once up`
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problem = `cannot read ${file}: ${(err as Error).message}`
    }
  }
  const script = new Script(source, { filename: bundle, cachedData })
  const state: CodeCacheState = file === null
    ? 'off'
    : damaged || script.cachedDataRejected === true ? 'rejected' : cachedData === undefined ? 'missing' : 'used'
  const handle: CodeCache = {
    state,
    file,
    problem,
    async save () {
      if (file === null || state === 'used') return 'unchanged'
      const data = script.createCachedData()
      await replaceFile(file, Buffer.concat([sha256(data), data]), 0o600)
      // Older bundles' and nodes' files, and partial ones of a process that died while saving (not
      // of one still writing). A leftover only costs disk, so a failure here does not undo the save.
      const dir = dirname(file)
      for (const name of await readdir(dir).catch(() => [])) {
        const stale = REPLACE_TMP.test(name) ? abandonedPartial(name) : name.endsWith(SUFFIX) && join(dir, name) !== file
        if (name.startsWith(PREFIX) && stale) await rm(join(dir, name), { force: true }).catch(() => {})
      }
      return 'saved'
    }
  }
  // Before the bundle runs: server.ts reads it while starting.
  ;(globalThis as Record<symbol, CodeCache>)[CODE_CACHE_KEY] = handle
  const module = { exports: {} }
  const run = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void
  run.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle))
  return handle
}

/**
 * Saves CACHE `afterMs` after the service is up, once per bundle and node (nothing when it was
 * used or is off), and logs the outcome. Returns what cancels it (on close).
 */
export function scheduleCodeCacheSave (cache: CodeCache, timers: TimerPort, log: Pick<Log, 'info' | 'warn'>, afterMs: number): () => void {
  if (cache.state === 'used' || cache.state === 'off') return () => {}
  const timer = timers.setTimeout(() => {
    cache.save().then((result) => {
      if (result === 'saved') log.info({ file: cache.file }, 'code cache saved: the next start compiles less')
    }, (err: unknown) => {
      log.warn({ file: cache.file, err }, `code cache not saved (the next start is slower, nothing else changes): ${(err as Error).message}`)
    })
  }, afterMs)
  return () => timers.clearTimeout(timer)
}
