// The availability figures of one VM: pure. State-change records and opening hours in, figures
// and strip segments out. No clock, no files, no timers: `from`/`to` are arguments.
//
// Rules (README.md explains why):
//   - A record holds from its `at` until the next record. Before a VM's first record nothing is
//     known: that time is left out of every figure (`historyFrom`).
//   - Only opening hours count (`open`: sorted, disjoint [from, to) instants; null = always open).
//     Within them each instant is healthy or lost to one cause; outside them it is `closedMs`.
//   - `late` and `starting` are undecided while they last: when the next state that is neither of
//     them is a revert, they were that revert's cause (a hang began at the last heartbeat); when
//     it is `maintenance`, `closed` or `unmonitored` (no heartbeat came back before watching
//     stopped), they are `hang` (a `starting` VM known to be off is reverted at once, so one still
//     starting runs without heartbeats); when heartbeats came back they count as healthy.

/** What a VM was doing, as recorded on each change (the watchdog's state, maintenance split). */
export const STATUSES = ['starting', 'healthy', 'late', 'reverting', 'grace', 'exhausted', 'maintenance', 'closed', 'unmonitored'] as const
export type Status = typeof STATUSES[number]

/** Why opening time was lost. `unmonitored`: the service was not running (no one watched). */
export const CAUSES = ['hang', 'vm_down', 'guest_request', 'maintenance', 'closed', 'unmonitored'] as const
export type Cause = typeof CAUSES[number]

/** What the dashboard's strip draws. `none`: nothing known (before the history, service stopped). */
export const STRIP_KINDS = ['healthy', 'late', 'reverting', 'maintenance', 'closed', 'none'] as const
export type StripKind = typeof STRIP_KINDS[number]

export interface StateRecord {
  /** Epoch ms the state began. */
  at: number
  status: Status
  /** The revert's reason (reverting, grace, exhausted) or the maintenance reason. */
  reason: string | null
  /** The revert's source: auto, guest, technician, schedule. */
  source: string | null
}

export type Interval = readonly [number, number]

export interface Segment {
  from: number
  to: number
  status: Status
  kind: StripKind
  /** null: healthy (or outside opening hours for the strip's `closed`). */
  cause: Cause | null
  reason: string | null
}

export interface RevertMark {
  at: number
  reason: string | null
  source: string | null
  cause: Cause
}

export interface Figures {
  from: number
  to: number
  /** The first recorded instant within [from, to], or null when nothing of it is known. */
  historyFrom: number | null
  /** Opening hours within [historyFrom, to]. */
  openMs: number
  healthyMs: number
  /** healthyMs / openMs; null without opening hours in the range. */
  ratio: number | null
  /** Opening time lost, by cause; healthyMs + the sum of these = openMs. */
  lostMs: Record<Cause, number>
  /** Known time outside opening hours. */
  closedMs: number
  reverts: RevertMark[]
}

const HANG_REASONS = new Set(['heartbeat_timeout', 'no_heartbeat_after_start', 'no_heartbeat_after_revert'])

/** The cause a revert (or the state it leads to) is counted under. */
export function revertCause (reason: string | null, source: string | null): Cause {
  if (source === 'guest') return 'guest_request'
  if (source === 'technician' || source === 'schedule') return 'maintenance'
  if (reason === 'vm_not_running') return 'vm_down'
  if (reason !== null && HANG_REASONS.has(reason)) return 'hang'
  // Frozen screen, error dialog and anything else the service decided on its own: the exhibit hung.
  return 'hang'
}

function isPending (status: Status): boolean {
  return status === 'late' || status === 'starting'
}

function stripKind (status: Status): StripKind {
  switch (status) {
    case 'healthy': return 'healthy'
    case 'late': case 'starting': return 'late'
    case 'reverting': case 'grace': case 'exhausted': return 'reverting'
    case 'maintenance': return 'maintenance'
    case 'closed': return 'closed'
    case 'unmonitored': return 'none'
  }
}

/**
 * The cause of each record's time (null = healthy). `records` sorted by `at`. A pending record
 * (late, starting) takes the cause of the revert (or the exhaustion) that ends it; exhausted the
 * cause of the revert before it.
 */
export function causes (records: readonly StateRecord[]): ReadonlyArray<Cause | null> {
  // Remembered per array (a history appends rarely and is asked often: every scrape, every
  // /vms): the same array with the same ends gives the same answer.
  const memo = causesMemo.get(records)
  if (memo !== undefined && memo.length === records.length && memo.first === records[0] && memo.last === records.at(-1)) return memo.out
  const out = computeCauses(records)
  causesMemo.set(records, { length: records.length, first: records[0], last: records.at(-1), out })
  return out
}

const causesMemo = new WeakMap<readonly StateRecord[], { length: number, first: StateRecord | undefined, last: StateRecord | undefined, out: ReadonlyArray<Cause | null> }>()

function computeCauses (records: readonly StateRecord[]): Array<Cause | null> {
  const out: Array<Cause | null> = new Array(records.length).fill(null)
  let lastRevert: Cause = 'hang'
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    switch (r.status) {
      case 'healthy': out[i] = null; break
      case 'reverting': case 'grace': lastRevert = out[i] = revertCause(r.reason, r.source); break
      case 'exhausted': out[i] = lastRevert; break
      case 'maintenance': out[i] = 'maintenance'; break
      case 'closed': out[i] = 'closed'; break
      case 'unmonitored': out[i] = 'unmonitored'; break
      case 'late': case 'starting': out[i] = null; break
    }
  }
  // Backwards: a run of pending records ended by a revert (or by giving up: exhausted) belongs to
  // it; one ended by watching stopping (maintenance, closed, unmonitored) without a heartbeat
  // coming back was a hang; one ended by heartbeats (healthy) was healthy.
  let next: Cause | null = null
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!
    if (isPending(r.status)) {
      out[i] = next
    } else {
      next = pendingCause(r.status, out[i]!)
    }
  }
  return out
}

/** The cause of a pending run (late, starting) that `status` (with cause `cause`) ends. */
function pendingCause (status: Status, cause: Cause | null): Cause | null {
  switch (status) {
    case 'reverting': case 'exhausted': return cause
    case 'maintenance': case 'closed': case 'unmonitored': return 'hang'
    case 'healthy': case 'grace': case 'late': case 'starting': return null
  }
}

/** Index of the last record with at <= t, or -1. */
function lastAtOrBefore (records: readonly StateRecord[], t: number): number {
  let lo = 0
  let hi = records.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (records[mid]!.at <= t) { found = mid; lo = mid + 1 } else hi = mid - 1
  }
  return found
}

/** The records' segments clipped to [from, to) (nothing before the first record). */
export function segments (records: readonly StateRecord[], from: number, to: number): Segment[] {
  if (to <= from || records.length === 0) return []
  const cause = causes(records)
  const out: Segment[] = []
  for (let i = Math.max(0, lastAtOrBefore(records, from)); i < records.length; i++) {
    const r = records[i]!
    const start = Math.max(r.at, from)
    const end = Math.min(records[i + 1]?.at ?? Infinity, to)
    if (r.at >= to) break
    if (end <= start) continue
    out.push({ from: start, to: end, status: r.status, kind: stripKind(r.status), cause: cause[i]!, reason: r.reason })
  }
  return out
}

/** Opening hours within [from, to) as sorted, disjoint intervals (null: always open). */
function clipOpen (open: readonly Interval[] | null, from: number, to: number): Interval[] {
  if (open === null) return [[from, to]]
  const out: Interval[] = []
  for (const [a, b] of open) {
    const s = Math.max(a, from)
    const e = Math.min(b, to)
    if (e > s) out.push([s, e])
  }
  return out
}

/** Length of [a, b) ∩ the intervals. */
function overlap (intervals: readonly Interval[], a: number, b: number): number {
  let sum = 0
  for (const [s, e] of intervals) {
    if (e <= a) continue
    if (s >= b) break
    sum += Math.min(e, b) - Math.max(s, a)
  }
  return sum
}

export function emptyLost (): Record<Cause, number> {
  return { hang: 0, vm_down: 0, guest_request: 0, maintenance: 0, closed: 0, unmonitored: 0 }
}

/** The figures of [from, to) from the records (sorted by `at`) and the opening hours. */
export function availability (records: readonly StateRecord[], open: readonly Interval[] | null, from: number, to: number): Figures {
  if (!(Number.isFinite(from) && Number.isFinite(to)) || to < from) throw new RangeError(`availability: [${from}, ${to}) is not a time range`)
  const segs = segments(records, from, to)
  const historyFrom = segs[0]?.from ?? null
  const openIn = historyFrom === null ? [] : clipOpen(open, historyFrom, to)
  const lostMs = emptyLost()
  let healthyMs = 0
  let closedMs = 0
  for (const s of segs) {
    const inOpen = overlap(openIn, s.from, s.to)
    closedMs += s.to - s.from - inOpen
    if (s.cause === null) healthyMs += inOpen
    else lostMs[s.cause] += inOpen
  }
  const openMs = openIn.reduce((sum, [a, b]) => sum + b - a, 0)
  const cause = causes(records)
  const reverts: RevertMark[] = []
  for (let i = Math.max(0, lastAtOrBefore(records, from)); i < records.length; i++) {
    const r = records[i]!
    if (r.at >= to) break
    if (r.at < from || r.status !== 'reverting' || records[i - 1]?.status === 'reverting') continue
    reverts.push({ at: r.at, reason: r.reason, source: r.source, cause: cause[i]! })
  }
  return { from, to, historyFrom, openMs, healthyMs, ratio: openMs === 0 ? null : healthyMs / openMs, lostMs, closedMs, reverts }
}

/**
 * The strip: segments of [from, to) with time outside opening hours drawn `closed` and time
 * without a record `none` (adjacent pieces of one kind merged).
 */
export function strip (records: readonly StateRecord[], open: readonly Interval[] | null, from: number, to: number): Array<{ from: number, to: number, kind: StripKind }> {
  const pieces: Array<{ from: number, to: number, kind: StripKind }> = []
  const push = (a: number, b: number, kind: StripKind) => {
    if (b <= a) return
    const last = pieces.at(-1)
    if (last !== undefined && last.kind === kind && last.to === a) last.to = b
    else pieces.push({ from: a, to: b, kind })
  }
  const segs = segments(records, from, to)
  push(from, segs[0]?.from ?? to, 'none')
  const openIn = clipOpen(open, from, to)
  for (const s of segs) {
    // Split the segment at the opening-hours boundaries inside it.
    let t = s.from
    for (const [a, b] of openIn) {
      if (b <= t) continue
      if (a >= s.to) break
      push(t, Math.min(a, s.to), 'closed')
      push(Math.max(a, t), Math.min(b, s.to), s.kind)
      t = Math.min(b, s.to)
    }
    push(t, s.to, 'closed')
  }
  return pieces
}
