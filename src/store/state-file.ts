// One JSON document on disk (a VM's persisted state), written so that a crash at any moment
// leaves either the old or the new document, never a mix: write a temporary file, fsync it,
// rename it over the old one, fsync the directory. The previous document is kept as `.bak`,
// written the same way, so a file damaged by hand or by a broken disk still leaves one good copy.
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { silentLog, type Log } from '../ports/index.ts'
import { StoreError, ensureDir, errnoOf, fsyncDir, replaceFile } from './fs.ts'

export interface StateFileOptions<T> {
  log?: Pick<Log, 'warn'>
  /** Checks and shapes what was read (a zod schema's `parse` fits); throwing marks the document unusable. */
  parse?: (value: unknown) => T
}

/** `{dataDir}/state/{vm}.json`: where a VM's state lives. */
export function vmStatePath (dataDir: string, vm: string): string {
  return `${dataDir.replace(/\/+$/, '')}/state/${vm}.json`
}

/**
 * What the last load found. `backup`: the file was damaged and the older `.bak` was used (so
 * settings made after it are gone); `none`: neither was usable; `missing`: no file yet (first
 * start). `problem` says what was wrong, for /status, the audit trail and the log.
 */
export interface StateLoadReport {
  source: 'file' | 'missing' | 'backup' | 'none'
  problem: string | null
}

export class StateFile<T> {
  readonly path: string
  readonly backupPath: string
  readonly #log: Pick<Log, 'warn'>
  readonly #parse: (value: unknown) => T
  #queue: Promise<void> = Promise.resolve()
  /** The newest text not yet written (a later save replaces an earlier one still waiting). */
  #pending: string | undefined
  /** The last text known to be good on disk: becomes the backup on the next save. undefined: not yet looked. */
  #lastGood: string | null | undefined
  /** Set by load(). */
  loadReport: StateLoadReport | null = null
  /** The last save's failure (null once a save succeeds): what /status shows while the disk refuses. */
  lastSaveError: string | null = null

  constructor (path: string, options: StateFileOptions<T> = {}) {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('StateFile needs a file path')
    this.path = path
    this.backupPath = `${path}.bak`
    this.#log = options.log ?? silentLog
    this.#parse = options.parse ?? ((value) => value as T)
  }

  /**
   * The saved document, or null when there is none. A damaged document is never fatal: it is
   * reported, and the backup (the document saved before it) is used when that one is good.
   */
  async load (): Promise<T | null> {
    const dirProblem = await notADirectory(dirname(this.path))
    if (dirProblem !== null) {
      // Nothing can be read or saved there: say so now, not at the first failed save.
      this.#log.warn({ path: dirname(this.path), problem: dirProblem }, 'the state directory is not usable; settings cannot be saved until it is fixed')
      this.loadReport = { source: 'none', problem: `${dirname(this.path)}: ${dirProblem}` }
      return null
    }
    const main = await this.#read(this.path)
    if (main.kind === 'missing') {
      this.loadReport = { source: 'missing', problem: null }
      return null
    }
    if (main.kind === 'ok') {
      this.#lastGood = main.text
      this.loadReport = { source: 'file', problem: null }
      return main.value
    }
    this.#log.warn({ path: this.path, problem: main.problem }, 'state file is damaged; trying its backup')
    const backup = await this.#read(this.backupPath)
    if (backup.kind === 'ok') {
      this.#log.warn({ path: this.backupPath, problem: main.problem }, 'state restored from the backup: the last save before the damaged one; later changes (maintenance) are lost')
      this.#lastGood = backup.text
      this.loadReport = { source: 'backup', problem: `${this.path}: ${main.problem}` }
      return backup.value
    }
    const backupProblem = backup.kind === 'missing' ? 'missing' : backup.problem
    this.#log.warn({ path: this.backupPath, problem: backupProblem }, 'no usable backup either; starting without saved state')
    this.loadReport = { source: 'none', problem: `${this.path}: ${main.problem}; ${this.backupPath}: ${backupProblem}` }
    return null
  }

  /**
   * Writes `value` durably. Saves never interleave; when several wait, only the newest is
   * written, and every caller's promise resolves once a value at least as new as its own is on disk.
   */
  save (value: T): Promise<void> {
    let text: string
    try {
      text = JSON.stringify(value, null, 2) + '\n'
    } catch (err) {
      return Promise.reject(new StoreError(`cannot save state to ${this.path}: the value is not JSON (${String(err)})`, this.path, { cause: err }))
    }
    this.#pending = text
    const run = this.#queue.then(async () => {
      const next = this.#pending
      if (next === undefined) return // a save queued earlier already wrote this value or a newer one
      this.#pending = undefined
      try {
        await this.#write(next)
        this.lastSaveError = null
      } catch (err) {
        if (this.#pending === undefined) this.#pending = next // let the next waiting save retry it
        this.lastSaveError = err instanceof Error ? err.message : String(err)
        throw err
      }
    })
    this.#queue = run.catch(() => {})
    return run
  }

  async #write (text: string): Promise<void> {
    const dir = dirname(this.path)
    await ensureDir(dir, `the state file ${this.path}`)
    if (this.#lastGood === undefined) {
      const current = await this.#read(this.path)
      this.#lastGood = current.kind === 'ok' ? current.text : null
    }
    if (this.#lastGood !== null && this.#lastGood !== text) await writeAtomically(this.backupPath, this.#lastGood)
    await writeAtomically(this.path, text)
    await fsyncDir(dir).catch((err: unknown) => {
      throw new StoreError(`cannot make ${this.path} durable (fsync of ${dir} failed: ${errnoOf(err) ?? String(err)})`, dir, { cause: err })
    })
    this.#lastGood = text
  }

  async #read (path: string): Promise<{ kind: 'ok', value: T, text: string } | { kind: 'missing' } | { kind: 'bad', problem: string }> {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return { kind: 'missing' }
      return { kind: 'bad', problem: `cannot read: ${errnoOf(err) ?? String(err)}` }
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      return { kind: 'bad', problem: text.trim() === '' ? 'empty file' : `not JSON (${(err as Error).message})` }
    }
    try {
      return { kind: 'ok', value: this.#parse(json), text }
    } catch (err) {
      return { kind: 'bad', problem: `unexpected content (${(err as Error).message.slice(0, 500)})` }
    }
  }
}

/** Why `dir` cannot hold state files (exists but is not a directory), or null. */
async function notADirectory (dir: string): Promise<string | null> {
  try {
    return (await stat(dir)).isDirectory() ? null : 'exists but is not a directory (move it away)'
  } catch (err) {
    const code = errnoOf(err)
    if (code === 'ENOENT') return null // created at the first save
    if (code === 'ENOTDIR') return 'a part of the path is a file, not a directory'
    return `cannot be read (${code ?? String(err)})`
  }
}

/** replaceFile, its failure a StoreError in a technician's words; the caller fsyncs the directory. */
async function writeAtomically (target: string, text: string): Promise<void> {
  try {
    await replaceFile(target, text, 0o644)
  } catch (err) {
    const code = errnoOf(err)
    throw new StoreError(`cannot write ${target}: ${code === 'ENOSPC' ? 'disk full' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EROFS' ? 'read-only file system' : code ?? String(err)}`, target, { cause: err })
  }
}
