// Refused and merged revert requests are summarised, not written one fsync'd line each: a guest
// (or anyone on a guest network) asking at the rate limit would otherwise write megabytes an hour
// and rotate the real history away. The first refusal of a burst is written in full at once; the
// rest within `windowMs` are counted, and one summary entry (`revert_requests_summary`) with the
// count, the time span and the reasons follows when the window ends (or at close).
import type { Clock, Log, TimerPort } from '../ports/index.ts'
import type { AuditEntryInput } from './audit-log.ts'

export const SUMMARISED_OUTCOMES = ['refused', 'coalesced'] as const
/** Distinct reasons (and whys) kept per summary; the rest are counted under "(other)". */
const MAX_DISTINCT = 20

export interface AuditSummaryOptions {
  /** Where entries go (AuditLog.append). */
  write (entry: AuditEntryInput): Promise<void>
  clock: Clock
  timers: TimerPort
  /** Length of a summary window; default 60 s. */
  windowMs?: number
  log?: Pick<Log, 'error'>
}

interface Group {
  vm: string
  outcome: string
  count: number
  from: number
  to: number
  reasons: Record<string, number>
  sources: Record<string, number>
  why: Record<string, number>
  timer: unknown
}

export class RequestAuditSummary {
  readonly #write: (entry: AuditEntryInput) => Promise<void>
  readonly #clock: Clock
  readonly #timers: TimerPort
  readonly #windowMs: number
  readonly #log: Pick<Log, 'error'> | undefined
  readonly #groups = new Map<string, Group>()
  #pending = new Set<Promise<void>>()

  constructor (options: AuditSummaryOptions) {
    this.#write = options.write
    this.#clock = options.clock
    this.#timers = options.timers
    this.#windowMs = options.windowMs ?? 60_000
    this.#log = options.log
  }

  /** Every entry passes through here; only refused and coalesced revert requests are held back. */
  append (entry: AuditEntryInput): Promise<void> {
    const outcome = typeof entry['outcome'] === 'string' ? entry['outcome'] : ''
    if (entry.kind !== 'revert_request' || !(SUMMARISED_OUTCOMES as readonly string[]).includes(outcome)) return this.#write(entry)
    const key = `${entry.vm}\u0000${outcome}`
    const group = this.#groups.get(key)
    if (group === undefined) {
      const now = this.#clock.now()
      const counts = (): Record<string, number> => Object.create(null) as Record<string, number>
      this.#groups.set(key, {
        vm: entry.vm,
        outcome,
        count: 0,
        from: now,
        to: now,
        reasons: counts(),
        sources: counts(),
        why: counts(),
        timer: this.#timers.setTimeout(() => this.#flush(key), this.#windowMs)
      })
      return this.#write(entry) // the first of a burst, in full
    }
    group.count++
    group.to = this.#clock.now()
    bump(group.reasons, entry.reason)
    bump(group.sources, entry.source)
    bump(group.why, entry['why'])
    return Promise.resolve()
  }

  /** Requests counted but not yet written. */
  get held (): number {
    let n = 0
    for (const group of this.#groups.values()) n += group.count
    return n
  }

  /** Writes every open summary now (at shutdown) and waits for the writes. */
  async close (): Promise<void> {
    for (const [key, group] of this.#groups) {
      this.#timers.clearTimeout(group.timer)
      this.#flush(key)
    }
    await Promise.allSettled([...this.#pending])
  }

  #flush (key: string): void {
    const group = this.#groups.get(key)
    if (group === undefined) return
    this.#groups.delete(key)
    if (group.count === 0) return
    const write = this.#write({
      vm: group.vm,
      kind: 'revert_requests_summary',
      reason: `${group.count} more revert request(s) ${group.outcome} within ${Math.round(this.#windowMs / 1000)} s`,
      outcome: group.outcome,
      count: group.count,
      from: new Date(group.from).toISOString(),
      to: new Date(group.to).toISOString(),
      reasons: group.reasons,
      sources: group.sources,
      why: group.why
    }).catch((err: unknown) => this.#log?.error({ err, vm: group.vm }, 'cannot write the audit trail'))
    this.#pending.add(write)
    write.finally(() => this.#pending.delete(write)).catch(() => {})
  }
}

function bump (counts: Record<string, number>, value: unknown): void {
  const key = typeof value === 'string' ? value.slice(0, 200) : String(value ?? '(none)')
  if (key in counts || Object.keys(counts).length < MAX_DISTINCT) counts[key] = (counts[key] ?? 0) + 1
  else counts['(other)'] = (counts['(other)'] ?? 0) + 1
}
