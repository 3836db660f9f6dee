// The frozen-screen detector of one VM. Every `interval` seconds, while the watchdog is watching
// (healthy or late: not while it reverts, waits for the first heartbeat, or is in maintenance), it
// takes a screenshot, shrinks it to a gray grid and compares it with the grid of the last visible
// change. No change for `frozen_after` seconds: one revert request (screen_frozen). A screen that
// looks like one of the configured error dialogs: one revert request (screen_error_dialog).
// One self-rescheduling unref'd timer; a sample never overlaps another (screenshots for the
// thumbnail route share the one in flight).
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Screenshot } from '../libvirt/types.ts'
import { realTimers, silentLog, type Clock, type Log, type TimerPort } from '../ports/index.ts'
import type { ScreenConfig } from './config.ts'
import { decodeImage, decodeScreenshot } from './decode.ts'
import { encodePng } from './png.ts'
import { compareGrids, thumbnail, toGrid, type Grid, type GridDifference, type RasterImage } from './raster.ts'

/** Watchdog states in which the screen is watched. */
export const WATCHING_STATES: readonly string[] = ['healthy', 'late']

export const SCREEN_FROZEN = 'screen_frozen'
export const SCREEN_ERROR_DIALOG = 'screen_error_dialog'

/** The source the watchdog is told: it counts toward the revert-loop limit (max_reverts) as a hang does. */
export const SCREEN_REVERT_SOURCE = 'screen'

/** The part of a Watchdog the sampler needs. */
export interface ScreenTarget {
  view (): { state: string }
  requestRevert (reason: string, source: typeof SCREEN_REVERT_SOURCE): unknown
}

/** Where screenshots come from: the Hypervisor. */
export interface ScreenSource {
  screenshot (domain: string): Promise<Screenshot>
}

type ScreenLog = Pick<Log, 'info' | 'warn' | 'error'>

export interface ErrorImage {
  /** The file it came from (for logs and the audit reason). */
  name: string
  grid: Grid
}

export interface ScreenSamplerOptions {
  vm: string
  config: ScreenConfig
  source: ScreenSource
  target: ScreenTarget
  clock: Clock
  timers?: TimerPort
  log?: ScreenLog
  errorImages?: ErrorImage[]
}

export interface ScreenCapture {
  /** Epoch ms. */
  takenAt: number
  width: number
  height: number
  /** A PNG at most 320 pixels wide. */
  png: Buffer
}

export interface ScreenView {
  enabled: boolean
  interval: number
  frozen_after: number
  /** Samples are being compared (the watchdog is watching). */
  watching: boolean
  last_sample_at: string | null
  /** When the screen last changed visibly (or watching began). */
  last_change_at: string | null
  unchanged_seconds: number | null
  last_difference: GridDifference | null
  last_error: string | null
  last_request: { reason: string, at: string } | null
}

/** Loads reference screenshots of error dialogs; a file that cannot be used is logged and skipped. */
export function loadErrorImages (paths: readonly string[], baseDir: string, log: Pick<Log, 'error'> = silentLog): ErrorImage[] {
  const images: ErrorImage[] = []
  for (const path of paths) {
    const file = resolve(baseDir, path)
    try {
      images.push({ name: path, grid: toGrid(decodeImage(readFileSync(file), file)) })
    } catch (err) {
      log.error({ file, err }, `screen.error_images: cannot use ${file}: ${(err as Error).message}`)
    }
  }
  return images
}

export class ScreenSampler {
  readonly #o: ScreenSamplerOptions & { timers: TimerPort, log: ScreenLog }
  #timer: unknown = null
  #running = false
  #capture: Promise<{ image: RasterImage, takenAt: number }> | null = null
  #tick: Promise<void> | null = null
  #latest: { image: RasterImage, takenAt: number, png: Buffer | null } | null = null
  #reference: Grid | null = null
  #lastChangeAt: number | null = null
  #lastSampleAt: number | null = null
  #lastDifference: GridDifference | null = null
  #lastError: string | null = null
  #lastRequest: { reason: string, at: number } | null = null
  #watching = false

  constructor (options: ScreenSamplerOptions) {
    this.#o = { ...options, timers: options.timers ?? realTimers, log: options.log ?? silentLog }
  }

  /** Starts sampling if the config enables it (the thumbnail works either way). */
  start (): void {
    if (this.#running || !this.#o.config.enabled) return
    this.#running = true
    this.#arm()
  }

  /** Stops the timer and waits for a sample in flight. */
  async stop (): Promise<void> {
    this.#running = false
    if (this.#timer !== null) this.#o.timers.clearTimeout(this.#timer)
    this.#timer = null
    await this.idle()
  }

  /** Resolves when the sample in flight (if any) is done. */
  async idle (): Promise<void> {
    while (this.#tick !== null) await this.#tick
  }

  /** The latest screenshot as a PNG thumbnail, taken now if the latest is older than maxAgeMs. */
  async screen (maxAgeMs: number): Promise<ScreenCapture> {
    const now = this.#o.clock.now()
    if (this.#latest === null || now - this.#latest.takenAt > maxAgeMs) await this.#captureOnce()
    const latest = this.#latest!
    latest.png ??= encodePng(thumbnail(latest.image))
    return { takenAt: latest.takenAt, width: latest.image.width, height: latest.image.height, png: latest.png }
  }

  view (): ScreenView {
    const iso = (t: number | null) => t === null ? null : new Date(t).toISOString()
    const c = this.#o.config
    return {
      enabled: c.enabled,
      interval: c.interval,
      frozen_after: c.frozen_after,
      watching: this.#watching,
      last_sample_at: iso(this.#lastSampleAt),
      last_change_at: iso(this.#lastChangeAt),
      unchanged_seconds: this.#watching && this.#lastChangeAt !== null && this.#lastSampleAt !== null ? Math.round((this.#lastSampleAt - this.#lastChangeAt) / 1000) : null,
      last_difference: this.#lastDifference,
      last_error: this.#lastError,
      last_request: this.#lastRequest === null ? null : { reason: this.#lastRequest.reason, at: iso(this.#lastRequest.at)! }
    }
  }

  #arm (): void {
    if (!this.#running) return
    this.#timer = this.#o.timers.setTimeout(() => {
      this.#timer = null
      this.#tick = this.#sample().finally(() => {
        this.#tick = null
        this.#arm()
      })
    }, this.#o.config.interval * 1000)
  }

  #isWatching (): boolean {
    return WATCHING_STATES.includes(this.#o.target.view().state)
  }

  /** Forgets the comparison baseline: the next sample starts the frozen count afresh. */
  #resetBaseline (): void {
    this.#reference = null
    this.#lastChangeAt = null
    this.#lastDifference = null
  }

  async #captureOnce (): Promise<{ image: RasterImage, takenAt: number }> {
    this.#capture ??= (async () => {
      try {
        const shot = await this.#o.source.screenshot(this.#o.vm)
        const image = decodeScreenshot(shot)
        const takenAt = this.#o.clock.now()
        this.#latest = { image, takenAt, png: null }
        return { image, takenAt }
      } finally {
        this.#capture = null
      }
    })()
    return this.#capture
  }

  async #sample (): Promise<void> {
    if (!this.#isWatching()) {
      this.#watching = false
      this.#resetBaseline()
      return
    }
    let captured: { image: RasterImage, takenAt: number }
    try {
      captured = await this.#captureOnce()
    } catch (err) {
      const message = (err as Error).message
      if (this.#lastError !== message) this.#o.log.warn({ vm: this.#o.vm, err }, `screen: cannot take a screenshot: ${message}`)
      this.#lastError = message
      this.#resetBaseline()
      return
    }
    if (this.#lastError !== null) this.#o.log.info({ vm: this.#o.vm }, 'screen: screenshots work again')
    this.#lastError = null
    // The watchdog may have started a revert while the screenshot was taken.
    if (!this.#isWatching()) {
      this.#watching = false
      this.#resetBaseline()
      return
    }
    this.#watching = true
    const now = captured.takenAt
    this.#lastSampleAt = now
    const grid = toGrid(captured.image)
    const c = this.#o.config

    for (const reference of this.#o.errorImages ?? []) {
      const difference = compareGrids(grid, reference.grid)
      if (difference.meanAbs < c.error_match_threshold) {
        this.#request(SCREEN_ERROR_DIALOG, now, { matched: reference.name, meanAbs: round(difference.meanAbs) })
        return
      }
    }

    if (this.#reference === null || this.#lastChangeAt === null) {
      this.#reference = grid
      this.#lastChangeAt = now
      return
    }
    const difference = compareGrids(this.#reference, grid)
    this.#lastDifference = { meanAbs: round(difference.meanAbs), changedPercent: round(difference.changedPercent) }
    if (difference.changedPercent > c.min_change_percent) {
      // Compared with the last change, not the last sample: a slow drift adds up to a change.
      this.#reference = grid
      this.#lastChangeAt = now
      return
    }
    if (now - this.#lastChangeAt >= c.frozen_after * 1000) {
      this.#request(SCREEN_FROZEN, now, { unchangedSeconds: Math.round((now - this.#lastChangeAt) / 1000), ...this.#lastDifference })
    }
  }

  #request (reason: string, now: number, fields: Record<string, unknown>): void {
    this.#o.log.warn({ vm: this.#o.vm, reason, ...fields }, `screen: ${reason === SCREEN_FROZEN ? 'frozen' : 'error dialog'}: asking for a revert`)
    this.#lastRequest = { reason, at: now }
    this.#resetBaseline()
    try {
      this.#o.target.requestRevert(reason, SCREEN_REVERT_SOURCE)
    } catch (err) {
      this.#o.log.error({ vm: this.#o.vm, err }, 'screen: the revert request failed')
    }
  }
}

function round (n: number): number {
  return Math.round(n * 100) / 100
}
