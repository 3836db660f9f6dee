// A VM's state-change history: `{data_dir}/history/{vm}.jsonl`, one line per change of state
// (never per heartbeat), rotated at `maxBytes` to `{vm}.jsonl.1` (one old file kept), and held
// in memory as far back as the two files reach: bounded (2 × maxBytes of lines per VM) and cheap
// (a change is one append; a query reads memory only).
import { appendFile, mkdir, readFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Log } from '../ports/index.ts'
import { STATUSES, type StateRecord, type Status } from './calc.ts'

export const HISTORY_MAX_BYTES = 1024 * 1024

export function historyPath (dataDir: string, vm: string): string {
  return join(dataDir, 'history', `${vm}.jsonl`)
}

function parseLine (line: string): StateRecord | null {
  try {
    const v = JSON.parse(line) as Record<string, unknown>
    if (typeof v['at'] !== 'number' || !Number.isFinite(v['at']) || !STATUSES.includes(v['status'] as Status)) return null
    const text = (x: unknown) => (typeof x === 'string' ? x : null)
    return { at: v['at'], status: v['status'] as Status, reason: text(v['reason']), source: text(v['source']) }
  } catch {
    return null
  }
}

async function readRecords (path: string): Promise<{ records: StateRecord[], bytes: number, skipped: number }> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], bytes: 0, skipped: 0 }
    throw err
  }
  const records: StateRecord[] = []
  let skipped = 0
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const r = parseLine(line)
    if (r === null) skipped++
    else records.push(r)
  }
  return { records, bytes: Buffer.byteLength(text), skipped }
}

export interface StateHistoryOptions {
  path: string
  log: Log
  maxBytes?: number
}

export class StateHistory {
  readonly path: string
  readonly #log: Log
  readonly #maxBytes: number
  /** Sorted by `at`: the rotated file's records, then the current file's. */
  #records: StateRecord[] = []
  #inRotated = 0
  /** Records written to the current file. */
  #inCurrent = 0
  #bytes = 0
  /** A write failed: it may have left part of a line, so the next one starts on a new line. */
  #afterFailure = false
  #chain: Promise<void> = Promise.resolve()
  /** The last write's failure (null once one succeeds). */
  lastError: string | null = null

  constructor (options: StateHistoryOptions) {
    this.path = options.path
    this.#log = options.log
    this.#maxBytes = options.maxBytes ?? HISTORY_MAX_BYTES
  }

  /** Reads both files. A damaged line is skipped (counted in the log); an unreadable file starts an empty history. */
  async load (): Promise<void> {
    try {
      const old = await readRecords(`${this.path}.1`)
      const cur = await readRecords(this.path)
      this.#records = [...old.records, ...cur.records].sort((a, b) => a.at - b.at)
      this.#inRotated = old.records.length
      this.#inCurrent = cur.records.length
      this.#bytes = cur.bytes
      if (old.skipped + cur.skipped > 0) this.#log.warn({ path: this.path, skipped: old.skipped + cur.skipped }, 'state history: damaged lines skipped')
    } catch (err) {
      this.#log.error({ err, path: this.path }, 'cannot read the state history; starting an empty one')
      this.#records = []
    }
  }

  get records (): readonly StateRecord[] {
    return this.#records
  }

  get last (): StateRecord | null {
    return this.#records.at(-1) ?? null
  }

  /**
   * Appends one record: in memory at once, on disk in order. A failed write is logged and the
   * record leaves memory again: memory holds what the files hold (so a figure does not change
   * on a restart, and the rotation's counts stay true). The next change is recorded as usual.
   */
  append (record: StateRecord): Promise<void> {
    const last = this.last
    // Time never runs backwards in the history (a wall clock stepped back): clamp.
    const r = last !== null && record.at < last.at ? { ...record, at: last.at } : record
    this.#records.push(r)
    const line = JSON.stringify({ ts: new Date(r.at).toISOString(), ...r }) + '\n'
    const run = this.#chain.then(() => this.#write(line))
    this.#chain = run.catch((err: unknown) => {
      const i = this.#records.lastIndexOf(r)
      if (i !== -1) this.#records.splice(i, 1)
      this.#afterFailure = true
      this.lastError = err instanceof Error ? err.message : String(err)
      this.#log.error({ err, path: this.path }, 'cannot write the state history; the change is not recorded')
    })
    return this.#chain
  }

  async #write (record: string): Promise<void> {
    // After a failed write (which may have left part of a line) start on a new line: an empty line is skipped on load.
    const line = this.#afterFailure ? `\n${record}` : record
    const size = Buffer.byteLength(line)
    // ...and count what the failed write left (the bound holds for what is really on disk).
    if (this.#afterFailure) this.#bytes = await stat(this.path).then((s) => s.size, () => 0)
    if (this.#bytes > 0 && this.#bytes + size > this.#maxBytes) {
      await rename(this.path, `${this.path}.1`)
      // The dropped file's records leave memory too: memory holds what the files hold.
      this.#records.splice(0, this.#inRotated)
      this.#inRotated = this.#inCurrent
      this.#inCurrent = 0
      this.#bytes = 0
    }
    if (this.#bytes === 0) {
      await mkdir(join(this.path, '..'), { recursive: true })
      this.#bytes = await stat(this.path).then((s) => s.size, () => 0)
    }
    await appendFile(this.path, line)
    this.#bytes += size
    this.#inCurrent++
    this.#afterFailure = false
    this.lastError = null
  }

  /** Waits for the writes queued so far. */
  async flush (): Promise<void> {
    await this.#chain
  }
}
