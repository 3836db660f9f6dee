// Technician alerts over HTTP: a JSON POST to each configured webhook that wants the event.
// notify() only enqueues and never throws, so a slow or dead receiver can never hold up a
// watchdog. Each webhook has its own bounded queue and one sender: attempts time out after
// timeout_seconds, failures (network error, timeout, non-2xx) are retried `retries` times with
// doubling backoff; when a queue is full the oldest alert is dropped (and that is logged).
import type { AlertEvent } from '../config/schema.ts'
import { realTimers, systemClock, type Clock, type Log, type TimerPort } from '../ports/index.ts'

export interface WebhookTarget {
  url: string
  events: readonly AlertEvent[]
  timeout_seconds: number
  retries: number
  headers: Record<string, string>
}

export interface AlertPayload {
  service: 'kiosk-vm-watchdog'
  event: AlertEvent
  vm: string
  reason: string
  /** ISO 8601 time of the event. */
  at: string
  host: string
  fields: Record<string, unknown>
}

export interface WebhookNotifierOptions {
  webhooks: readonly WebhookTarget[]
  /** Alerts waiting per webhook; beyond this the oldest is dropped. */
  queueSize: number
  log: Pick<Log, 'info' | 'warn'>
  /** First wait before a retry (doubles each time, at most maxRetryDelayMs). */
  retryDelayMs?: number
  maxRetryDelayMs?: number
  /** The per-attempt timeout and the backoff (default: real timers); tests pass a fake clock. */
  timers?: TimerPort
  clock?: Clock
}

interface Delivery {
  payload: AlertPayload
  queuedAt: number
}

/** The URL without query string or credentials: safe to log (a query may carry a key). */
export function loggableUrl (url: string): string {
  const u = new URL(url)
  return `${u.protocol}//${u.host}${u.pathname}`
}

class WebhookQueue {
  readonly target: WebhookTarget
  private readonly options: WebhookNotifierOptions
  private readonly pending: Delivery[] = []
  private running: Promise<void> | null = null
  private readonly stop = new AbortController()
  dropped = 0
  delivered = 0
  failed = 0

  constructor (target: WebhookTarget, options: WebhookNotifierOptions) {
    this.target = target
    this.options = options
  }

  push (payload: AlertPayload): void {
    if (this.stop.signal.aborted) return
    if (this.pending.length >= this.options.queueSize) {
      const old = this.pending.shift()!
      this.dropped++
      this.options.log.warn({ webhook: loggableUrl(this.target.url), event: old.payload.event, vm: old.payload.vm }, 'alert queue full: dropped the oldest alert')
    }
    this.pending.push({ payload, queuedAt: (this.options.clock ?? systemClock).now() })
    this.running ??= this.run().finally(() => { this.running = null })
  }

  /** Resolves when everything queued so far was sent or given up. */
  async idle (): Promise<void> {
    while (this.running) await this.running
  }

  async close (): Promise<void> {
    this.stop.abort()
    this.pending.length = 0
    await this.idle()
  }

  private async run (): Promise<void> {
    let next: Delivery | undefined
    while ((next = this.pending.shift()) !== undefined) {
      await this.deliver(next)
    }
  }

  private async deliver (delivery: Delivery): Promise<void> {
    const { target, options } = this
    const url = loggableUrl(target.url)
    const body = JSON.stringify(delivery.payload)
    let delay = options.retryDelayMs ?? 1000
    for (let attempt = 1; attempt <= target.retries + 1; attempt++) {
      if (this.stop.signal.aborted) return
      const problem = await this.attempt(body)
      if (problem === null) {
        this.delivered++
        options.log.info({ webhook: url, event: delivery.payload.event, vm: delivery.payload.vm, attempt }, 'alert sent')
        return
      }
      const last = attempt === target.retries + 1
      options.log.warn({ webhook: url, event: delivery.payload.event, vm: delivery.payload.vm, attempt, problem, retryInMs: last ? null : delay }, last ? 'alert not delivered: giving up' : 'alert not delivered: retrying')
      if (last) break
      await sleep(delay, this.stop.signal, options.timers ?? realTimers)
      delay = Math.min(delay * 2, options.maxRetryDelayMs ?? 60_000)
    }
    this.failed++
  }

  /** One POST; null on success, else what went wrong. */
  private async attempt (body: string): Promise<string | null> {
    // The timeout is a timer of our own (not AbortSignal.timeout) so it runs on the injected clock.
    const timeout = new AbortController()
    const timers = this.options.timers ?? realTimers
    const timer = timers.setTimeout(() => { timeout.abort(new DOMException('attempt timed out', 'TimeoutError')) }, this.target.timeout_seconds * 1000)
    const signal = AbortSignal.any([timeout.signal, this.stop.signal])
    try {
      const res = await fetch(this.target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'kiosk-vm-watchdog', ...this.target.headers },
        body,
        signal,
        redirect: 'error'
      })
      await res.arrayBuffer().catch(() => undefined) // free the connection
      return res.ok ? null : `HTTP ${res.status}`
    } catch (err) {
      const e = err as Error
      if (e.name === 'TimeoutError') return `no answer within ${this.target.timeout_seconds} s`
      if (e.name === 'AbortError') return 'stopped'
      const cause = e.cause as { code?: string, message?: string } | undefined
      return cause?.code ?? cause?.message ?? e.message
    } finally {
      timers.clearTimeout(timer)
    }
  }
}

function sleep (ms: number, signal: AbortSignal, timers: TimerPort): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(); return }
    const timer = timers.setTimeout(done, ms)
    function done () {
      timers.clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

export class WebhookNotifier {
  private readonly queues: WebhookQueue[]

  constructor (options: WebhookNotifierOptions) {
    this.queues = options.webhooks.map((target) => new WebhookQueue(target, options))
  }

  get size (): number {
    return this.queues.length
  }

  /** Queues the alert for every webhook that wants this event; returns at once. */
  notify (payload: AlertPayload): void {
    for (const q of this.queues) {
      if (q.target.events.includes(payload.event)) q.push(payload)
    }
  }

  /** Per webhook: delivered, failed (gave up), dropped (queue full). */
  stats (): Array<{ url: string, delivered: number, failed: number, dropped: number }> {
    return this.queues.map((q) => ({ url: loggableUrl(q.target.url), delivered: q.delivered, failed: q.failed, dropped: q.dropped }))
  }

  /** Resolves when all queued alerts were sent or given up (tests, graceful stop). */
  async idle (): Promise<void> {
    await Promise.all(this.queues.map((q) => q.idle()))
  }

  /** Stops sending: drops what waits, aborts what is in flight. */
  async close (): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()))
  }
}
