// V8's code cache for the production bundle (start time, issue 15). dist/cli.js (src/boot.ts)
// compiles dist/service.cjs with the bytecode V8 saved at an earlier start instead of parsing and
// compiling 1.6 MB again: ≈ 130 ms of a ≈ 500 ms start (bench/README.md). Node 22 has this built
// in (module.enableCompileCache); node 20 has it only for vm.Script, hence this file.
//
// The cache is read only from systemd's CacheDirectory= of the unit ($CACHE_DIRECTORY, owned by
// the service's user): bytecode found there runs as this service, so never a shared directory
// such as /tmp. Its file name carries the bundle's SHA-256 and node's version, because V8 itself
// checks only the source's length before it trusts the bytecode.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readdir, rename, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Script } from 'node:vm'

/**
 * What this start did: `used` (the saved bytecode was accepted), `missing` (none saved yet for
 * this bundle and node), `rejected` (V8 refused it: other V8 flags), `off` (no cache directory).
 */
export type CodeCacheState = 'used' | 'missing' | 'rejected' | 'off'

export interface CodeCache {
  readonly state: CodeCacheState
  /** The cache file of this bundle and node, or null when off. */
  readonly file: string | null
  /** Why a cache file could not be read (other than not existing), for the start's log line. */
  readonly problem: string | null
  /**
   * Writes the bytecode compiled so far (run it once the service is up: functions compiled while
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

const CACHE_SUFFIX = '.v8cache'

/**
 * Runs the CommonJS file `bundle` (as node's loader would: module, exports, require, __filename,
 * __dirname) compiled with the cache in `cacheDir` when there is one for it, and returns what
 * happened. `cacheDir` undefined or '' turns the cache off; the file still runs.
 */
export function runWithCodeCache (bundle: string, cacheDir: string | undefined): CodeCache {
  const bytes = readFileSync(bundle)
  const file = cacheDir === undefined || cacheDir === ''
    ? null
    : join(cacheDir, `service-${createHash('sha256').update(bytes).update(process.version).digest('hex').slice(0, 32)}${CACHE_SUFFIX}`)
  let cachedData: Buffer | undefined
  let problem: string | null = null
  if (file !== null) {
    try {
      cachedData = readFileSync(file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problem = `cannot read ${file}: ${(err as Error).message}`
    }
  }
  // The wrapper of node's CommonJS loader, on one line: the source map's lines stay right.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${bytes.toString('utf8')}\n})`, { filename: bundle, cachedData })
  const state: CodeCacheState = file === null ? 'off' : cachedData === undefined ? 'missing' : script.cachedDataRejected === true ? 'rejected' : 'used'
  const module = { exports: {} }
  const run = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void
  const handle: CodeCache = {
    state,
    file,
    problem,
    async save () {
      if (file === null || state === 'used') return 'unchanged'
      const data = script.createCachedData()
      const dir = dirname(file)
      const partial = `${file}.${process.pid}.partial`
      try {
        await writeFile(partial, data, { mode: 0o600 })
        await rename(partial, file)
      } catch (err) {
        await rm(partial, { force: true })
        throw err
      }
      for (const name of await readdir(dir)) {
        const other = join(dir, name)
        if (other !== file && name.startsWith('service-') && (name.endsWith(CACHE_SUFFIX) || name.endsWith('.partial'))) await rm(other, { force: true })
      }
      return 'saved'
    }
  }
  // Before the bundle runs: server.ts reads it while starting.
  ;(globalThis as Record<symbol, CodeCache>)[CODE_CACHE_KEY] = handle
  run.call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle))
  return handle
}
