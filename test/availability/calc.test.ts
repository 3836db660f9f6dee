// The pure availability calculation (src/availability/calc.ts): synthetic days with known
// answers, DST days in Europe/Berlin (23 h and 25 h) included. No Fastify, no clock.
import t, { type Test } from 'tap'
import { availability, causes, segments, strip, type Interval, type StateRecord } from '../../src/availability/calc.ts'
import { openingIntervals } from '../../src/schedule/state.ts'
import { scheduleSchema } from '../../src/schedule/config.ts'
import { instantOf, parseDay } from '../../src/schedule/zone.ts'

const H = 3_600_000
const M = 60_000
const S = 1000
const DAY = Date.UTC(2026, 10, 23) // a Monday, UTC

function rec (at: number, status: StateRecord['status'], reason: string | null = null, source: string | null = null): StateRecord {
  return { at, status, reason, source }
}

/** Every instant of [from, to) is in exactly one strip piece, in order. */
function checkStrip (t: Test, pieces: ReturnType<typeof strip>, from: number, to: number): void {
  t.equal(pieces[0]?.from, from, 'the strip starts at from')
  t.equal(pieces.at(-1)?.to, to, 'the strip ends at to')
  for (let i = 1; i < pieces.length; i++) t.equal(pieces[i]!.from, pieces[i - 1]!.to, `piece ${i} follows the one before`)
}

// The day every cause happens once (UTC, no schedule: the whole day is opening time).
const day: StateRecord[] = [
  rec(DAY, 'healthy'),
  rec(DAY + 8 * H, 'late'), // a hang: no heartbeat; late after timeout/2
  rec(DAY + 8 * H + 5 * S, 'reverting', 'heartbeat_timeout', 'auto'),
  rec(DAY + 8 * H + 10 * S, 'grace', 'heartbeat_timeout', 'auto'),
  rec(DAY + 8 * H + M, 'healthy'),
  rec(DAY + 10 * H, 'late'), // late, then the heartbeats came back: healthy all along
  rec(DAY + 10 * H + 5 * S, 'healthy'),
  rec(DAY + 12 * H, 'reverting', 'vm_not_running', 'auto'),
  rec(DAY + 12 * H + 2 * M, 'healthy'),
  rec(DAY + 14 * H, 'reverting', 'idle', 'guest'),
  rec(DAY + 14 * H + 30 * S, 'grace', 'idle', 'guest'),
  rec(DAY + 14 * H + M, 'healthy'),
  rec(DAY + 16 * H, 'maintenance', 'technician'),
  rec(DAY + 17 * H, 'healthy'),
  rec(DAY + 20 * H, 'unmonitored', 'service_stopped'),
  rec(DAY + 21 * H, 'starting'),
  rec(DAY + 21 * H + 2 * S, 'healthy')
]

t.test('a synthetic day: each cause once, known answers', async (t) => {
  const f = availability(day, null, DAY, DAY + 24 * H)
  t.equal(f.historyFrom, DAY)
  t.equal(f.openMs, 24 * H)
  t.same(f.lostMs, { hang: M, vm_down: 2 * M, guest_request: M, maintenance: H, closed: 0, unmonitored: H })
  t.equal(f.healthyMs, 24 * H - (M + 2 * M + M + H + H))
  t.equal(f.ratio, (24 * H - 7440 * S) / (24 * H))
  t.equal(f.closedMs, 0)
  t.same(f.reverts.map((r) => [r.at - DAY, r.cause]), [[8 * H + 5 * S, 'hang'], [12 * H, 'vm_down'], [14 * H, 'guest_request']])
  const pieces = strip(day, null, DAY, DAY + 24 * H)
  checkStrip(t, pieces, DAY, DAY + 24 * H)
  t.same(pieces.filter((p) => p.kind === 'none').map((p) => [p.from - DAY, p.to - DAY]), [[20 * H, 21 * H]], 'the stopped service is drawn as unknown')
})

t.test('the sum of the parts is the whole, for any window', async (t) => {
  for (const [from, to] of [[DAY + 7 * H, DAY + 9 * H], [DAY + 8 * H + 2 * S, DAY + 8 * H + 7 * S], [DAY - 5 * H, DAY + 3 * H], [DAY + 23 * H, DAY + 30 * H]] as const) {
    const f = availability(day, null, from, to)
    const lost = Object.values(f.lostMs).reduce((a, b) => a + b, 0)
    t.equal(f.healthyMs + lost, f.openMs, `[${(from - DAY) / H} h, ${(to - DAY) / H} h): healthy + lost = opening`)
  }
  const before = availability(day, null, DAY - 5 * H, DAY + 3 * H)
  t.equal(before.historyFrom, DAY, 'time before the first record is left out')
  t.equal(before.openMs, 3 * H)
  t.same(availability(day, null, DAY - 5 * H, DAY - H).ratio, null, 'nothing known: no ratio')
  const hangOnly = availability(day, null, DAY + 8 * H + 2 * S, DAY + 8 * H + 7 * S)
  t.equal(hangOnly.lostMs.hang, 5 * S, 'a late stretch cut by the window is still the hang it led to')
})

t.test('late and starting take the cause of what ends them', async (t) => {
  const c = causes([
    rec(0, 'starting'), rec(1, 'reverting', 'no_heartbeat_after_start', 'auto'), rec(2, 'grace', 'no_heartbeat_after_start', 'auto'),
    rec(3, 'healthy'), rec(4, 'late'), rec(5, 'healthy'), rec(6, 'late'), rec(7, 'reverting', 'frozen_screen', 'auto'),
    rec(8, 'exhausted', 'loop limit'), rec(9, 'late')
  ])
  t.same(c, ['hang', 'hang', 'hang', null, null, null, 'hang', 'hang', 'hang', null])
  t.same(causes([rec(0, 'late'), rec(1, 'reverting', 'technician', 'technician')]), ['maintenance', 'maintenance'], 'a technician\'s revert is maintenance')
  t.same(causes([rec(0, 'reverting', 'schedule_open', 'schedule'), rec(1, 'closed', 'closed')]), ['maintenance', 'closed'])
  t.same(causes([rec(0, 'reverting', 'vm_not_running', 'auto'), rec(1, 'healthy'), rec(2, 'late'), rec(3, 'exhausted', 'max_reverts reached')]), ['vm_down', null, 'vm_down', 'vm_down'],
    'late ended by giving up (the loop limit) is lost, to the cause of the reverts that led there')
  t.same(segments([], 0, 10), [])
})

t.test('late and starting ended by maintenance, closed or unmonitored (no heartbeat came back) are lost to hang', async (t) => {
  t.same(causes([rec(0, 'healthy'), rec(1, 'late'), rec(2, 'maintenance', 'auto_revert_disabled')]), [null, 'hang', 'maintenance'], 'late, then auto-revert switched off to look')
  t.same(causes([rec(0, 'healthy'), rec(1, 'late'), rec(2, 'closed', 'closed')]), [null, 'hang', 'closed'])
  t.same(causes([rec(0, 'healthy'), rec(1, 'late'), rec(2, 'unmonitored', 'service_crashed')]), [null, 'hang', 'unmonitored'])
  t.same(causes([rec(0, 'starting'), rec(1, 'maintenance', 'technician')]), ['hang', 'maintenance'], 'starting without a heartbeat, then maintenance')
  t.same(causes([rec(0, 'starting'), rec(1, 'late'), rec(2, 'unmonitored', 'service_stopped')]), ['hang', 'hang', 'unmonitored'], 'a pending run is decided as a whole')
  t.same(causes([rec(0, 'late'), rec(1, 'healthy'), rec(2, 'maintenance', 'technician')]), [null, null, 'maintenance'], 'heartbeats came back first: healthy')
  t.same(causes([rec(0, 'healthy'), rec(1, 'late')]), [null, null], 'still undecided at the end of the history')

  // A day, always open: a 20 s late stretch ended by maintenance (technician, 1 h), a 45 s starting
  // stretch ended by the service stopping again; a 2 s starting stretch ended by a heartbeat.
  const records = [
    rec(DAY, 'healthy'),
    rec(DAY + 8 * H, 'late'),
    rec(DAY + 8 * H + 20 * S, 'maintenance', 'technician'),
    rec(DAY + 9 * H, 'healthy'),
    rec(DAY + 11 * H, 'unmonitored', 'service_stopped'),
    rec(DAY + 12 * H, 'starting'),
    rec(DAY + 12 * H + 45 * S, 'unmonitored', 'service_stopped'),
    rec(DAY + 13 * H, 'starting'),
    rec(DAY + 13 * H + 2 * S, 'healthy')
  ]
  const f = availability(records, null, DAY, DAY + 24 * H)
  t.same(f.lostMs, { hang: 65 * S, vm_down: 0, guest_request: 0, maintenance: H - 20 * S, closed: 0, unmonitored: 2 * H - 45 * S })
  t.equal(f.healthyMs, 21 * H)
  t.equal(f.ratio, 21 / 24)
  t.same(f.reverts, [])

  // Opening hours 10:00-18:00: late from 17:59, closed at 18:00: the minute is a hang.
  const closing = [rec(DAY + 10 * H, 'healthy'), rec(DAY + 17 * H + 59 * M, 'late'), rec(DAY + 18 * H, 'closed', 'closed')]
  const g = availability(closing, [[DAY + 10 * H, DAY + 18 * H]], DAY + 10 * H, DAY + 24 * H)
  t.equal(g.openMs, 8 * H)
  t.same(g.lostMs, { hang: M, vm_down: 0, guest_request: 0, maintenance: 0, closed: 0, unmonitored: 0 })
  t.equal(g.healthyMs, 8 * H - M)
  t.equal(g.closedMs, 6 * H)
})

const berlin = 'Europe/Berlin'
const schedule = scheduleSchema.parse({ hours: { mon: '10:00-18:00', tue: '10:00-18:00', wed: '10:00-18:00', thu: '10:00-18:00', fri: '10:00-18:00', sat: '10:00-18:00', sun: '01:00-04:00, 10:00-18:00' } })

/** A day in Berlin: healthy in opening hours, closed outside, one hang of 60 s at 03:30 and the opening revert at 10:00. */
function berlinDay (date: string): { from: number, to: number, open: Interval[], records: StateRecord[] } {
  const d = parseDay(date)!
  const at = (hh: number, mm: number, ss = 0) => instantOf(d, hh * 60 + mm, berlin) + ss * S
  const from = instantOf(d, 0, berlin)
  const to = instantOf(d + 1, 0, berlin)
  const records = [
    rec(from - 6 * H, 'closed', 'closed'),
    rec(at(1, 0), 'reverting', 'schedule_open', 'schedule'), rec(at(1, 0, 20), 'healthy'),
    rec(at(3, 30), 'late'), rec(at(3, 30, 5), 'reverting', 'heartbeat_timeout', 'auto'), rec(at(3, 30, 10), 'grace', 'heartbeat_timeout', 'auto'), rec(at(3, 31), 'healthy'),
    rec(at(4, 0), 'closed', 'closed'),
    rec(at(10, 0), 'reverting', 'schedule_open', 'schedule'), rec(at(10, 0, 40), 'healthy'),
    rec(at(18, 0), 'closed', 'closed')
  ]
  return { from, to, open: openingIntervals(schedule, berlin, from, to), records }
}

t.test('DST in Europe/Berlin: the 23-hour and the 25-hour day', async (t) => {
  for (const [date, hours, nightOpen] of [['2026-03-29', 23, 2], ['2026-10-25', 25, 4], ['2026-11-22', 24, 3]] as const) {
    const { from, to, open, records } = berlinDay(date)
    t.equal(to - from, hours * H, `${date} has ${hours} hours`)
    const opening = (nightOpen + 8) * H
    t.equal(open.reduce((s, [a, b]) => s + b - a, 0), opening, `${date}: 01:00-04:00 is ${nightOpen} h, plus 10:00-18:00`)
    const f = availability(records, open, from, to)
    t.equal(f.openMs, opening)
    t.same(f.lostMs, { hang: M, vm_down: 0, guest_request: 0, maintenance: 20 * S + 40 * S, closed: 0, unmonitored: 0 }, `${date}: the hang and the two opening reverts`)
    t.equal(f.healthyMs, opening - 2 * M)
    t.equal(f.closedMs, hours * H - opening, `${date}: the rest of the day is closed`)
    t.equal(f.ratio, (opening - 2 * M) / opening)
    const pieces = strip(records, open, from, to)
    checkStrip(t, pieces, from, to)
    t.same([...new Set(pieces.map((p) => p.kind))].sort(), ['closed', 'healthy', 'late', 'reverting'])
  }
})

t.test('bad ranges are refused, not miscounted', async (t) => {
  t.throws(() => availability(day, null, DAY + H, DAY), RangeError)
  t.throws(() => availability(day, null, Number.NaN, DAY), RangeError)
  t.same(availability(day, null, DAY, DAY).openMs, 0)
})
