// The audit trail: one JSON object per line in `{data_dir}/audit.jsonl`, appended, never edited.
//
// Crash safety: each entry is one write(2) of one complete line, appends are serialized, and a
// file found not to end in a newline (a torn last line from a crash) gets one before the next
// entry, so a crash costs at most the entry being written. Readers skip lines that are not
// entries (torn, garbage) and count them.
//
// Reads go backwards from the end in chunks, so "the newest 100" costs one or two reads however
// large the file is. When the file would grow past maxBytes it is renamed to audit.jsonl.1
// (older ones shift to .2 ... .keepFiles, the oldest is dropped); reads continue into the
// rotated files until they have `limit` entries.
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { silentLog, type Log } from '../ports/index.ts'
import { StoreError, ensureDir, errnoOf, fsyncDir } from './fs.ts'

/**
 * An entry without its VM: what a per-VM helper takes (use this, not `Omit<AuditEntryInput, 'vm'>`,
 * which loses the named fields to the index signature).
 */
export interface AuditEventInput {
  /** What happened, snake_case: 'revert', 'heartbeat_timeout', 'snapshot_create', ... */
  kind: string
  /** Defaults to now. */
  ts?: string | Date
  reason?: string
  /** Who or what caused it: 'watchdog', 'guest', 'technician', 'schedule', ... */
  source?: string
  outcome?: string
  durationMs?: number
  /** Any further fields are kept as given (JSON). */
  [field: string]: unknown
}

/** What append() takes. */
export interface AuditEntryInput extends AuditEventInput {
  vm: string
}

export interface AuditEntry extends AuditEntryInput {
  /** ISO 8601, UTC, milliseconds. */
  ts: string
}

export interface AuditQuery {
  /** How many entries at most (newest first); default 100. */
  limit?: number
  vm?: string
  kind?: string
  /** Only entries strictly older than this (for paging: pass the oldest ts of the previous page). */
  before?: string | Date | number
  /** Continue into audit.jsonl.1, .2, ... when the current file has too few; default true. */
  includeRotated?: boolean
  /** Stop after reading this many bytes (default 32 MiB): one request never reads the whole history twice over. */
  maxScanBytes?: number
}

export interface AuditReadResult {
  entries: AuditEntry[]
  /** Lines examined that were not entries (torn by a crash, garbage, not an object with ts/vm/kind). */
  skipped: number
  /** Bytes read from disk. */
  bytesRead: number
  /** True when the read stopped at maxScanBytes before finding `limit` entries (older entries may match). */
  truncated: boolean
}

export interface AuditLogOptions {
  /** The data directory: the log is `{dir}/audit.jsonl`. */
  dir?: string
  /** The log file itself (instead of dir). */
  path?: string
  log?: Pick<Log, 'warn'>
  /** Rotate when an append would take the file past this size; default 16 MiB. */
  maxBytes?: number
  /** Rotated files kept (audit.jsonl.1 ... .N); default 5; 0 drops the old file on rotation. */
  keepFiles?: number
  /** fdatasync after every append; default true (entries are rare: reverts, technician actions). */
  sync?: boolean
  /** Clock for entries without ts (ms since the epoch). */
  now?: () => number
  /** Read chunk size in bytes; default 64 KiB. */
  chunkBytes?: number
}

export const AUDIT_DEFAULTS = { maxBytes: 16 * 1024 * 1024, keepFiles: 5, limit: 100, maxLimit: 100_000, maxScanBytes: 32 * 1024 * 1024 } as const

/**
 * The longest line a read assembles. Entries are a few hundred bytes; a longer line is damage (or
 * someone's garbage) and is skipped without being held in memory. append() refuses longer entries.
 */
export const MAX_LINE_BYTES = 256 * 1024

const NEWLINE = 0x0a

export class AuditLog {
  readonly path: string
  readonly maxBytes: number
  readonly keepFiles: number
  readonly #log: Pick<Log, 'warn'>
  readonly #sync: boolean
  readonly #now: () => number
  readonly #chunkBytes: number
  #queue: Promise<unknown> = Promise.resolve()
  #handle: FileHandle | null = null
  #size = 0
  #needsNewline = false
  #closed = false
  #skippedWarned = 0

  constructor (options: AuditLogOptions) {
    const path = options.path ?? (options.dir ? join(options.dir, 'audit.jsonl') : undefined)
    if (!path) throw new TypeError('AuditLog needs a dir (the data directory) or a path')
    this.path = path
    this.maxBytes = positiveInt(options.maxBytes ?? AUDIT_DEFAULTS.maxBytes, 'maxBytes', 1)
    this.keepFiles = positiveInt(options.keepFiles ?? AUDIT_DEFAULTS.keepFiles, 'keepFiles', 0)
    this.#chunkBytes = positiveInt(options.chunkBytes ?? 64 * 1024, 'chunkBytes', 16)
    this.#log = options.log ?? silentLog
    this.#sync = options.sync ?? true
    this.#now = options.now ?? Date.now
  }

  /** Appends one entry as one line. Rejects with a StoreError naming the path when the disk refuses. */
  append (input: AuditEntryInput): Promise<void> {
    let line: Buffer
    try {
      line = Buffer.from(JSON.stringify(this.#normalize(input)) + '\n', 'utf8')
    } catch (err) {
      return Promise.reject(err instanceof TypeError && err.message.startsWith('audit entry') ? err : new TypeError(`audit entry is not JSON: ${String(err)}`))
    }
    if (line.length > MAX_LINE_BYTES) return Promise.reject(new TypeError(`audit entry is too long (${line.length} bytes; at most ${MAX_LINE_BYTES})`))
    return this.#enqueue(() => this.#appendLine(line))
  }

  /** The newest entries (newest first) matching the query. */
  async read (query: AuditQuery = {}): Promise<AuditEntry[]> {
    const result = await this.query(query)
    // Warn when a read meets more damage than any read before (not on every poll of the same torn line).
    if (result.skipped > this.#skippedWarned) {
      this.#skippedWarned = result.skipped
      this.#log.warn({ path: this.path, skipped: result.skipped }, 'audit trail has lines that are not entries (a torn last line after a crash, or damage); skipped them')
    }
    return result.entries
  }

  /** Like read(), with the count of skipped lines and bytes read. */
  async query (query: AuditQuery = {}): Promise<AuditReadResult> {
    const limit = positiveInt(query.limit ?? AUDIT_DEFAULTS.limit, 'limit', 1, AUDIT_DEFAULTS.maxLimit)
    const maxScanBytes = positiveInt(query.maxScanBytes ?? AUDIT_DEFAULTS.maxScanBytes, 'maxScanBytes', 1)
    const before = query.before === undefined ? Infinity : toMs(query.before, 'before')
    const needles: Buffer[] = []
    if (query.vm !== undefined) needles.push(Buffer.from(`"vm":${JSON.stringify(query.vm)}`))
    if (query.kind !== undefined) needles.push(Buffer.from(`"kind":${JSON.stringify(query.kind)}`))

    // Open the files in the append queue, so no rotation happens between opening the current file
    // and the rotated ones (an open handle keeps reading the same file after a rename).
    const files = await this.#enqueue(() => this.#openForReading(query.includeRotated ?? true))
    const result: AuditReadResult = { entries: [], skipped: 0, bytesRead: 0, truncated: false }
    try {
      for (const { handle, size } of files) {
        for await (const lines of linesBackwards(handle, size, this.#chunkBytes, result, maxScanBytes)) {
          for (const line of lines) {
            if (line.length === 0) { // a line over MAX_LINE_BYTES: damage, skipped unread
              result.skipped++
              continue
            }
            if (!needles.every((needle) => line.includes(needle))) continue
            const entry = parseEntry(line)
            if (entry === null) {
              result.skipped++
              continue
            }
            if ((query.vm !== undefined && entry.vm !== query.vm) || (query.kind !== undefined && entry.kind !== query.kind)) continue
            if (!(Date.parse(entry.ts) < before)) continue
            result.entries.push(entry)
            if (result.entries.length >= limit) return result
          }
        }
        if (result.truncated) return result
      }
      return result
    } finally {
      await Promise.all(files.map(({ handle }) => handle.close()))
    }
  }

  /** Waits for pending appends and closes the file. Appends after close still work (open, write, close). */
  async close (): Promise<void> {
    await this.#enqueue(async () => {
      this.#closed = true
      await this.#closeHandle()
    })
  }

  #enqueue<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn)
    this.#queue = run.catch(() => {})
    return run
  }

  #normalize (input: AuditEntryInput): AuditEntry {
    if (input === null || typeof input !== 'object') throw new TypeError('audit entry must be an object')
    const { ts, vm, kind, ...rest } = input
    if (typeof vm !== 'string' || vm.length === 0) throw new TypeError('audit entry needs vm (a non-empty string)')
    if (typeof kind !== 'string' || kind.length === 0) throw new TypeError('audit entry needs kind (a non-empty string)')
    const time = ts === undefined ? this.#now() : toMs(ts, 'audit entry ts')
    return { ts: new Date(time).toISOString(), vm, kind, ...rest }
  }

  async #appendLine (line: Buffer): Promise<void> {
    if (this.#handle === null) await this.#openForAppend()
    if (this.#size > 0 && this.#size + line.length > this.maxBytes) await this.#rotate()
    const handle = this.#handle as FileHandle
    const data = this.#needsNewline ? Buffer.concat([Buffer.from('\n'), line]) : line
    try {
      let written = 0
      // One write for the whole line; a regular file only writes less when the disk is full.
      while (written < data.length) {
        const { bytesWritten } = await handle.write(data, written, data.length - written)
        if (bytesWritten === 0) throw new Error('wrote 0 bytes')
        written += bytesWritten
        this.#size += bytesWritten
      }
      this.#needsNewline = false
      if (this.#sync) await handle.datasync()
    } catch (err) {
      await this.#closeHandle() // reopen next time: re-reads the size and repairs a torn line
      throw new StoreError(`cannot append to the audit trail ${this.path}: ${errnoOf(err) === 'ENOSPC' ? 'disk full' : errnoOf(err) ?? String(err)}`, this.path, { cause: err })
    } finally {
      if (this.#closed) await this.#closeHandle()
    }
  }

  async #openForAppend (): Promise<void> {
    await ensureDir(dirname(this.path), 'the audit trail')
    let handle: FileHandle
    try {
      handle = await open(this.path, 'a+', 0o644)
    } catch (err) {
      throw new StoreError(`cannot open the audit trail ${this.path}: ${errnoOf(err) === 'EISDIR' ? 'it is a directory, not a file (move it away)' : errnoOf(err) ?? String(err)}`, this.path, { cause: err })
    }
    const { size } = await handle.stat()
    this.#size = size
    this.#needsNewline = false
    if (size > 0) {
      const last = Buffer.alloc(1)
      await handle.read(last, 0, 1, size - 1)
      if (last[0] !== NEWLINE) {
        this.#needsNewline = true
        this.#log.warn({ path: this.path }, 'audit trail ends in a torn line (a crash while writing?); the next entry starts on a new line')
      }
    }
    this.#handle = handle
  }

  async #rotate (): Promise<void> {
    await this.#closeHandle()
    const dir = dirname(this.path)
    try {
      if (this.keepFiles === 0) {
        await unlink(this.path)
      } else {
        for (let i = this.keepFiles; i >= 2; i--) await renameIfExists(`${this.path}.${i - 1}`, `${this.path}.${i}`)
        await rename(this.path, `${this.path}.1`)
      }
      await fsyncDir(dir)
    } catch (err) {
      throw new StoreError(`cannot rotate the audit trail ${this.path}: ${errnoOf(err) ?? String(err)}`, this.path, { cause: err })
    }
    await this.#openForAppend()
  }

  async #closeHandle (): Promise<void> {
    const handle = this.#handle
    this.#handle = null
    await handle?.close().catch(() => {})
  }

  async #openForReading (includeRotated: boolean): Promise<Array<{ handle: FileHandle, size: number }>> {
    const paths = [this.path]
    if (includeRotated) for (let i = 1; i <= this.keepFiles; i++) paths.push(`${this.path}.${i}`)
    const files: Array<{ handle: FileHandle, size: number }> = []
    try {
      for (const path of paths) {
        let handle: FileHandle
        try {
          // open(2) of a directory for reading succeeds: ask first, to say what is wrong.
          if (!(await stat(path)).isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' })
          handle = await open(path, 'r')
        } catch (err) {
          if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') continue // no log (yet)
          throw new StoreError(`cannot read the audit trail ${path}: ${errnoOf(err) === 'EISDIR' ? 'it is a directory (or another non-file), not a file: move it away' : errnoOf(err) ?? String(err)}`, path, { cause: err })
        }
        files.push({ handle, size: (await handle.stat()).size })
      }
    } catch (err) {
      await Promise.all(files.map(({ handle }) => handle.close()))
      throw err
    }
    return files
  }
}

/**
 * Lines of `handle[0, size)`, last first, without their newlines, one array per chunk read;
 * empty lines are left out, a line longer than MAX_LINE_BYTES comes as an empty buffer (and is
 * never assembled). Linear in the bytes read: each byte is searched for a newline once, and the
 * pieces of a line that spans chunks are joined once.
 */
async function * linesBackwards (handle: FileHandle, size: number, chunkBytes: number, stats: { bytesRead: number, truncated: boolean }, maxScanBytes: number): AsyncGenerator<Buffer[]> {
  let position = size
  let tail: Buffer[] = [] // pieces of the line whose start is in an earlier chunk, last piece first
  let tailBytes = 0
  let overlong = false
  const finish = (first: Buffer): Buffer | null => {
    const line = overlong ? Buffer.alloc(0) : tail.length === 0 ? first : Buffer.concat([first, ...tail.reverse()])
    const wasOverlong = overlong
    tail = []
    tailBytes = 0
    overlong = false
    return wasOverlong || line.length > 0 ? line : null
  }
  while (position > 0) {
    if (stats.bytesRead >= maxScanBytes) {
      stats.truncated = true // the rest is older than anything a technician pages to in one request
      return
    }
    const start = Math.max(0, position - chunkBytes)
    const chunk = Buffer.allocUnsafe(position - start)
    let filled = 0
    while (filled < chunk.length) {
      const { bytesRead } = await handle.read(chunk, filled, chunk.length - filled, start + filled)
      if (bytesRead === 0) break // the file shrank under us (replaced by hand): read what is there
      filled += bytesRead
    }
    stats.bytesRead += filled
    position = start
    const data = chunk.subarray(0, filled)
    const lines: Buffer[] = []
    let end = data.length
    let newline = end > 0 ? data.lastIndexOf(NEWLINE, end - 1) : -1
    while (newline >= 0) {
      const line = finish(data.subarray(newline + 1, end))
      if (line !== null) lines.push(line)
      end = newline
      newline = end > 0 ? data.lastIndexOf(NEWLINE, end - 1) : -1
    }
    if (end > 0 && !overlong) {
      tail.push(data.subarray(0, end))
      tailBytes += end
      if (tailBytes > MAX_LINE_BYTES) {
        overlong = true
        tail = []
      }
    }
    if (lines.length > 0) yield lines
  }
  const last = finish(Buffer.alloc(0))
  if (last !== null) yield [last]
}

function parseEntry (line: Buffer): AuditEntry | null {
  let value: unknown
  try {
    value = JSON.parse(line.toString('utf8'))
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const entry = value as Partial<AuditEntry>
  if (typeof entry.ts !== 'string' || typeof entry.vm !== 'string' || typeof entry.kind !== 'string' || Number.isNaN(Date.parse(entry.ts))) return null
  return entry as AuditEntry
}

function toMs (value: string | Date | number, what: string): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Date.parse(value)
  if (!Number.isFinite(ms)) throw new TypeError(`${what} is not a valid time: ${String(value)}`)
  return ms
}

function positiveInt (value: number, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new TypeError(`${what} must be an integer from ${min} to ${max}, got ${String(value)}`)
  return value
}

async function renameIfExists (from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
}
