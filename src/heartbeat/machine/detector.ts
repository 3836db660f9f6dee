// The adaptive hang detector (φ accrual: Hayashibara, Défago, Yared, Katayama 2004; as in Akka
// and Cassandra). From a VM's recent heartbeat gaps, φ(t) = −log10(P(the next beat comes later
// than t | the history)): φ 1 means a 10 % chance that the beat is still to come, φ 8 one in 10^8.
//
// P is the history's own distribution, smoothed (a kernel estimate: each remembered gap counts
// as a small normal bump, 10 % of its length wide), not a normal distribution fitted to the mean
// and deviation as in the paper. Why: guests stall rarely and long (a 5 s pause among thousands
// of 1 s beats); a fitted normal all but ignores such outliers and convicts the next stall at
// once (bench/README.md: 55 false reverts a day on a guest stalling 3–6 s three times an hour),
// while here one remembered 6 s gap keeps φ low until the silence passes 6 s. A guest that has
// never stalled is convicted within a few of its own gap lengths (then adaptive_min_timeout).
//
// The memory is bounded and long: gaps are counted in logarithmic buckets, per epoch of
// PHI_EPOCH_GAPS gaps, the newest PHI_EPOCHS epochs kept (1 h each at one beat a second: 23–24 h),
// so stalls a few times a day are remembered. Only the epoch being filled is copied per beat.
// The memory is the guest's (the software in its snapshot), not the run's: it is kept across
// reverts and restarts (in the state file). Until it holds `adaptive_learning` seconds of
// heartbeats the fixed rules apply, so a stall gets the chance to be seen once: a stall the
// detector convicts ends in a revert and is never learned (bench/README.md).

// Pure arithmetic on plain numbers; the window lives in the machine's state. The deadline is
// where φ crosses the threshold, computed once per heartbeat (crossingMs), so the runtime still
// arms ONE timer, and the tick at that instant finds φ ≥ threshold (the same function decides).

/** Gaps per epoch of the memory. */
export const PHI_EPOCH_GAPS = 3600
/** Epochs kept: the memory holds the last (PHI_EPOCHS − 1) × PHI_EPOCH_GAPS to PHI_EPOCHS × PHI_EPOCH_GAPS gaps. */
export const PHI_EPOCHS = 24
/** Fewer gaps than this, however long they took: the fixed rules apply. */
export const PHI_MIN_SAMPLES = 10
/** The narrowest kernel (a very regular guest is not judged by its milliseconds). */
export const PHI_MIN_WIDTH_MS = 100
/** Kernel width relative to the gap: a gap of 5 s stands for 5 s ± 0.5 s. */
const KERNEL_RELATIVE_WIDTH = 0.1

/** Bucket k holds gaps in [FIRST_EDGE·RATIO^(k−1), FIRST_EDGE·RATIO^k); bucket 0 everything shorter, the last everything longer. */
const FIRST_EDGE_MS = 200
const RATIO = 1.15
export const PHI_BUCKETS = 50
/** A typical gap of each bucket (the geometric middle; bucket 0: 150 ms). */
const CENTERS = Array.from({ length: PHI_BUCKETS }, (_, k) => k === 0 ? 150 : FIRST_EDGE_MS * RATIO ** (k - 0.5))

/** The remembered gaps: counts per bucket, per epoch (oldest first; the last one is being filled), and summed. */
export interface GapWindow {
  epochs: number[][]
  /** Gaps in the last epoch. */
  filling: number
  /** Per bucket, over all epochs. */
  total: number[]
  samples: number
  /** The time the window's gaps add up to, since it was first filled (learning is over past adaptive_learning). */
  learnedMs: number
}

export interface PhiModel {
  /** Buckets with gaps in them: typical gap, kernel width, share of all gaps. */
  kernels: Array<{ centerMs: number, widthMs: number, lnWeight: number }>
  samples: number
  meanGapMs: number
  longestGapMs: number
}

export function emptyWindow (): GapWindow {
  return { epochs: [], filling: 0, total: new Array<number>(PHI_BUCKETS).fill(0), samples: 0, learnedMs: 0 }
}

export function bucketOf (gapMs: number): number {
  if (!(gapMs >= FIRST_EDGE_MS)) return 0
  return Math.min(PHI_BUCKETS - 1, 1 + Math.floor(Math.log(gapMs / FIRST_EDGE_MS) / Math.log(RATIO)))
}

/** What a state file keeps of a window: the counts per epoch and the learned time (totals are derived). */
export interface SavedGapWindow {
  epochs: number[][]
  filling: number
  learnedMs: number
}

export function saveWindow (w: GapWindow): SavedGapWindow {
  return { epochs: w.epochs, filling: w.filling, learnedMs: w.learnedMs }
}

/**
 * The window a state file kept, or an empty one (with the reason) when its shape is not this
 * version's (bucket or epoch counts changed): a wrong memory is worse than a fresh start.
 */
export function restoreWindow (saved: SavedGapWindow): { window: GapWindow, problem: string | null } {
  const { epochs, filling, learnedMs } = saved
  if (epochs.length > PHI_EPOCHS || epochs.some((e) => e.length !== PHI_BUCKETS)) {
    return { window: emptyWindow(), problem: `expected at most ${PHI_EPOCHS} epochs of ${PHI_BUCKETS} buckets` }
  }
  const last = epochs.at(-1)
  const lastCount = last === undefined ? 0 : last.reduce((a, b) => a + b, 0)
  if (filling !== lastCount || filling > PHI_EPOCH_GAPS) {
    return { window: emptyWindow(), problem: `the newest epoch holds ${lastCount} gaps, the file says ${filling}` }
  }
  const total = new Array<number>(PHI_BUCKETS).fill(0)
  let samples = 0
  for (const e of epochs) {
    for (let k = 0; k < PHI_BUCKETS; k++) { total[k]! += e[k]!; samples += e[k]! }
  }
  return { window: { epochs: epochs.map((e) => [...e]), filling, total, samples, learnedMs }, problem: null }
}

/**
 * A new window with `gapMs` added; the given one is not changed (only the epoch being filled
 * and the totals are copied; full epochs are shared, they never change again).
 */
export function addGap (w: GapWindow, gapMs: number): GapWindow {
  const b = bucketOf(gapMs)
  let epochs = w.epochs
  let filling = w.filling
  const total = [...w.total]
  let samples = w.samples
  if (epochs.length === 0 || filling >= PHI_EPOCH_GAPS) {
    epochs = [...epochs, new Array<number>(PHI_BUCKETS).fill(0)]
    filling = 0
    if (epochs.length > PHI_EPOCHS) {
      const dropped = epochs[0]!
      epochs = epochs.slice(1)
      for (let k = 0; k < PHI_BUCKETS; k++) {
        total[k]! -= dropped[k]!
        samples -= dropped[k]!
      }
    }
  } else {
    epochs = [...epochs]
  }
  const current = [...epochs.at(-1)!]
  current[b]!++
  epochs[epochs.length - 1] = current
  total[b]!++
  return { epochs, filling: filling + 1, total, samples: samples + 1, learnedMs: w.learnedMs + Math.max(0, gapMs) }
}

/** The smoothed distribution of the window, or null while learning (less than `learningMs` of heartbeats, or fewer than PHI_MIN_SAMPLES gaps). */
export function fitModel (w: GapWindow, learningMs: number): PhiModel | null {
  if (w.samples < PHI_MIN_SAMPLES || w.learnedMs < learningMs) return null
  const kernels: PhiModel['kernels'] = []
  let sum = 0
  let longest = 0
  for (let k = 0; k < PHI_BUCKETS; k++) {
    const count = w.total[k]!
    if (count === 0) continue
    const centerMs = CENTERS[k]!
    kernels.push({ centerMs, widthMs: Math.max(PHI_MIN_WIDTH_MS, KERNEL_RELATIVE_WIDTH * centerMs), lnWeight: Math.log(count / w.samples) })
    sum += count * centerMs
    longest = centerMs
  }
  return { kernels, samples: w.samples, meanGapMs: sum / w.samples, longestGapMs: longest }
}

const LN10 = Math.log(10)

/**
 * ln erfc(x) for x >= 0, in log space so a far tail does not underflow to 0 (and φ to Infinity).
 * Numerical Recipes' erfcc (Chebyshev fit): fractional error below 1.2e-7 everywhere.
 */
function lnErfc (x: number): number {
  const t = 1 / (1 + 0.5 * x)
  const poly = -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277))))))))
  return Math.log(t) + poly
}

/** ln P(X > z) for a standard normal X. */
function lnUpperTail (z: number): number {
  const x = z / Math.SQRT2
  return x >= 0 ? Math.log(0.5) + lnErfc(x) : Math.log(1 - 0.5 * Math.exp(lnErfc(-x)))
}

/** φ after `elapsedMs` without a heartbeat. */
export function phi (m: PhiModel, elapsedMs: number): number {
  // ln Σ w_k P_k, summed in log space (log-sum-exp) so that tails far out stay finite.
  let max = -Infinity
  const terms = m.kernels.map((k) => {
    const term = k.lnWeight + lnUpperTail((elapsedMs - k.centerMs) / k.widthMs)
    if (term > max) max = term
    return term
  })
  let sum = 0
  for (const term of terms) sum += Math.exp(term - max)
  return Math.max(0, -(max + Math.log(sum)) / LN10)
}

/**
 * The elapsed time (whole ms) at which φ reaches `threshold`, within [minMs, maxMs]: the
 * smallest whole ms in that range with φ ≥ threshold (φ only grows with the silence), or maxMs
 * when φ stays below it.
 */
export function crossingMs (m: PhiModel, threshold: number, minMs: number, maxMs: number): number {
  let lo = Math.ceil(minMs)
  let hi = Math.max(lo, Math.floor(maxMs))
  if (phi(m, lo) >= threshold) return lo
  if (phi(m, hi) < threshold) return hi
  // Invariant: φ(lo) < threshold <= φ(hi).
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (phi(m, mid) >= threshold) hi = mid
    else lo = mid
  }
  return hi
}
