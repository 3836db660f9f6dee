// The hang detectors compared on heartbeat arrival traces, through the real machine
// (src/heartbeat/machine.ts) on a simulated clock: no service, no guest, no waiting. For each
// trace and each detector setting it prints
//   - detection: last heartbeat -> revert started, for hangs put at seeded random moments
//     (the machine's state at that moment is forked; it is pure, so forking is free);
//   - false reverts per simulated day: reverts of the healthy trace itself (the revert is taken
//     as done at once and the trace goes on; the loop limit is out of the way so each counts).
// Traces: steady 1 s with jitter; stalls of 3–6 s three times an hour (Poisson); rare 8–12 s
// stalls (four a day); the real e2e guest (bench/traces/e2e-guest.json, from
// bench/record-arrivals.ts), repeated to fill the time.
//   npm run bench:detector [-- --days 7] [--hangs 300] [--seed 1]
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { initialState, nextDeadline, step, type MachineEvent, type MachineSettings, type WatchdogState } from '../src/heartbeat/machine.ts'
import { mulberry32 } from '../harness/prng.ts'

const { values } = parseArgs({ options: { days: { type: 'string' }, hangs: { type: 'string' }, seed: { type: 'string' } } })
const days = Number(values.days ?? 7)
const hangCount = Number(values.hangs ?? 300)
const seed = Number(values.seed ?? 1)
if (!(days > 0) || !Number.isInteger(hangCount) || hangCount < 1 || !Number.isInteger(seed)) {
  throw new Error('--days must be above 0, --hangs a whole number >= 1, --seed a whole number')
}
const DAY = 86_400_000
const T0 = Date.UTC(2026, 0, 1)

// ------------------------------------------------------------------------------------------------
// Traces: gaps between heartbeats (ms), enough to fill `days`.

type Trace = { name: string, gaps: number[] }

function fill (make: () => number): number[] {
  const gaps: number[] = []
  for (let total = 0; total < days * DAY;) {
    const g = make()
    gaps.push(g)
    total += g
  }
  return gaps
}

/** 1 s with ±`jitter` ms (uniform), plus a stall of [lo, hi] s at Poisson rate `perHour`. */
function synthetic (name: string, s: number, jitter: number, stall: { perHour: number, lo: number, hi: number } | null): Trace {
  const rnd = mulberry32(s)
  const pStall = stall === null ? 0 : stall.perHour / 3600 // per one-second beat
  return {
    name,
    gaps: fill(() => rnd() < pStall ? Math.round((stall!.lo + rnd() * (stall!.hi - stall!.lo)) * 1000) : Math.round(1000 + (rnd() * 2 - 1) * jitter))
  }
}

const traces: Trace[] = [
  synthetic('steady 1 s ±50 ms', seed, 50, null),
  synthetic('stalls 3–6 s, 3/hour', seed + 1, 50, { perHour: 3, lo: 3, hi: 6 }),
  synthetic('rare stalls 8–12 s, 4/day', seed + 2, 50, { perHour: 4 / 24, lo: 8, hi: 12 })
]
const recorded = join(import.meta.dirname, 'traces', 'e2e-guest.json')
if (existsSync(recorded)) {
  const doc = JSON.parse(readFileSync(recorded, 'utf8')) as { gapsMs: number[], minutes: number, load?: { before: string } }
  let i = 0
  traces.push({ name: `e2e guest (${doc.gapsMs.length} gaps recorded, repeated)`, gaps: fill(() => doc.gapsMs[i++ % doc.gapsMs.length]!) })
} else {
  console.log(`(no ${recorded}: record one with bench/record-arrivals.ts)`)
}

// ------------------------------------------------------------------------------------------------
// Detector settings

const BASE: MachineSettings = {
  heartbeat_timeout: 15,
  heartbeat_detector: 'fixed',
  phi_threshold: 8,
  adaptive_min_timeout: 3,
  adaptive_learning: 3600,
  startup_grace: 60,
  post_revert_grace: 60,
  auto_revert_enabled: true,
  max_reverts: Number.MAX_SAFE_INTEGER, // count every false revert; the loop limit is another matter
  revert_window: 3600,
  revert_retry_initial: 5,
  revert_retry_max: 300,
  guest_revert_min_interval: 60
}
const settingsList: Array<{ label: string, s: MachineSettings }> = [
  { label: 'fixed, timeout 15 s (default)', s: BASE },
  { label: 'fixed, timeout 7 s', s: { ...BASE, heartbeat_timeout: 7 } },
  { label: 'fixed, timeout 4 s', s: { ...BASE, heartbeat_timeout: 4 } }
]
const DAY_S = 24 * 3600
for (const threshold of [2, 4, 8, 16]) {
  settingsList.push({ label: `adaptive φ ${threshold}, min 3 s, learning 24 h`, s: { ...BASE, heartbeat_detector: 'adaptive', phi_threshold: threshold, adaptive_learning: DAY_S } })
}
settingsList.push({ label: 'adaptive φ 8, min 3 s, learning 1 h', s: { ...BASE, heartbeat_detector: 'adaptive', adaptive_learning: 3600 } })
settingsList.push({ label: 'adaptive φ 8, min 3 s, learning 8 h', s: { ...BASE, heartbeat_detector: 'adaptive', adaptive_learning: 8 * 3600 } })

// ------------------------------------------------------------------------------------------------
// Replay

function feed (st: WatchdogState, event: MachineEvent, now: number, s: MachineSettings): { st: WatchdogState, reverted: boolean } {
  const r = step(st, event, now, s)
  return { st: r.state, reverted: r.actions.some((a) => a.type === 'revert') }
}

/** Ticks at every deadline up to `to`; a revert is done at once. Returns the state and the revert times. */
function advance (st: WatchdogState, to: number, s: MachineSettings): { st: WatchdogState, reverts: number[] } {
  const reverts: number[] = []
  for (let d = nextDeadline(st); d !== null && d <= to; d = nextDeadline(st)) {
    const r = feed(st, { type: 'tick' }, d, s)
    st = r.st
    if (r.reverted) {
      reverts.push(d)
      st = feed(st, { type: 'revert_finished', durationMs: 0 }, d, s).st
    }
  }
  return { st, reverts }
}

interface Result { detection: number[], falseReverts: number, days: number }

function replay (trace: Trace, s: MachineSettings, hangSeed: number): Result {
  const rnd = mulberry32(hangSeed)
  const total = trace.gaps.length
  // Hangs at seeded random beats once learning is over (at least past the first hour): the
  // detection a guest gets from its second day on. While learning, heartbeat_timeout rules.
  const from = Math.max(3600, s.heartbeat_detector === 'adaptive' ? s.adaptive_learning : 0) + 100
  const hangAt = new Set<number>()
  while (hangAt.size < Math.min(hangCount, total - from)) hangAt.add(from + Math.floor(rnd() * (total - from)))
  let now = T0
  let st = initialState(null, now, s)
  st = feed(st, { type: 'heartbeat' }, now, s).st
  let falseReverts = 0
  const detection: number[] = []
  for (let i = 0; i < total; i++) {
    now += trace.gaps[i]!
    const a = advance(st, now, s)
    st = a.st
    falseReverts += a.reverts.length
    st = feed(st, { type: 'heartbeat' }, now, s).st
    if (hangAt.has(i)) {
      // The guest hangs right after this beat: the first revert of the forked state is the detection.
      const hang = advance(st, now + 3_600_000, s)
      if (hang.reverts.length > 0) detection.push(hang.reverts[0]! - now)
    }
  }
  return { detection, falseReverts, days: (now - T0) / DAY }
}

function pct (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`

console.log(`hang detectors on arrival traces: ${days} simulated days per trace, ${hangCount} hangs each, seed ${seed}`)
console.log('detection = last heartbeat -> revert started; false reverts = reverts of the healthy trace')
const started = Date.now()
for (const trace of traces) {
  const sortedGaps = [...trace.gaps].sort((a, b) => a - b)
  console.log(`\n${trace.name}: ${trace.gaps.length} gaps, median ${pct(sortedGaps, 0.5)} ms, p99 ${pct(sortedGaps, 0.99)} ms, max ${sortedGaps.at(-1)} ms`)
  console.log(`  ${'detector'.padEnd(40)} ${'detect median'.padStart(13)} ${'detect p99'.padStart(11)} ${'false reverts/day'.padStart(18)}`)
  for (const { label, s } of settingsList) {
    const r = replay(trace, s, seed + 100)
    const d = [...r.detection].sort((a, b) => a - b)
    const perDay = r.falseReverts / r.days
    console.log(`  ${label.padEnd(40)} ${sec(pct(d, 0.5)).padStart(13)} ${sec(pct(d, 0.99)).padStart(11)} ${perDay.toFixed(2).padStart(18)}`)
  }
}
console.log(`\n(${((Date.now() - started) / 1000).toFixed(1)} s)`)
