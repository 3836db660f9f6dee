// GET /api/v1/events/stream: Server-Sent Events for the dashboard. Each message (event `state`)
// carries every watched VM's watchdog view in the shape of /status's `watchdog` field (views.ts).
// One sender per app: a message goes out once a second (the heartbeat-age tick) and, when a
// watchdog changes, at the next moment allowed, never more than one per `intervalMs` per client.
// A client that goes away is dropped at once; closing the app ends every stream (they never go
// idle, so the server would wait for them).
import type { ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { AppError } from '../errors.ts'
import { watchedVms } from '../plugins/observe.ts'
import { normalizeAddress } from '../net/addresses.ts'
import { watchdogViewBody, type WatchdogViewBody } from './views.ts'

/** Unsent bytes a stream client may hold before it is disconnected (~a minute of messages). */
const MAX_BUFFERED_BYTES = 64 * 1024

declare module 'fastify' {
  interface FastifyInstance {
    /** Dashboards connected to the live stream right now. */
    liveStreams (): number
  }
}

export interface StreamRoutesOptions {
  /** Shortest gap between two messages to a client, and the tick period (default 1000 ms). */
  intervalMs?: number
}

export interface StreamMessage {
  /** Server time, epoch ms (the client's clock may differ). */
  ts: number
  vms: WatchdogViewBody[]
}

/** At most this many dashboards at once; more answer 503 (each holds a socket). */
const MAX_CLIENTS = 50
/** At most this many streams per client address (a kiosk shows one dashboard, a desk a few); more answer 429, so one client cannot hold them all. */
export const MAX_STREAMS_PER_ADDRESS = 4

const streamRoutes: FastifyPluginAsyncZod<StreamRoutesOptions> = async (app, options) => {
  // Registered without encapsulation (fastify-plugin) so liveStreams() is on the app: full path here.
  const intervalMs = options.intervalMs ?? 1000
  const clients = new Set<ServerResponse>()
  const perAddress = new Map<string, number>()
  // The app's clock and timers: tests move time instead of waiting for ticks.
  let timer: unknown = null
  let lastSentAt = 0
  const unsubscribe: Array<() => void> = []

  function message (): string {
    const body: StreamMessage = { ts: app.clock.now(), vms: [...watchedVms(app).values()].map((w) => watchdogViewBody(w.view())) }
    return `event: state\ndata: ${JSON.stringify(body)}\n\n`
  }

  function send (): void {
    timer = null
    if (clients.size === 0) return
    const text = message()
    for (const res of clients) {
      // A client that stops reading would make us buffer without end: let it go.
      if (res.writableLength > MAX_BUFFERED_BYTES) res.destroy()
      else res.write(text)
    }
    lastSentAt = app.clock.now()
    timer = app.timers.setTimeout(send, intervalMs)
  }

  /** A watchdog changed: send now if allowed, else the next tick carries it. */
  function changed (): void {
    if (clients.size === 0) return
    if (app.clock.now() - lastSentAt >= intervalMs) {
      if (timer !== null) app.timers.clearTimeout(timer)
      send()
    }
  }

  app.decorate('liveStreams', () => clients.size)

  app.addHook('onReady', async () => {
    for (const w of watchedVms(app).values()) {
      w.on('change', changed)
      unsubscribe.push(() => w.off('change', changed))
    }
  })
  app.addHook('preClose', async () => {
    for (const u of unsubscribe.splice(0)) u()
    if (timer !== null) app.timers.clearTimeout(timer)
    timer = null
    for (const res of clients) res.end()
    clients.clear()
    perAddress.clear()
  })

  app.get('/api/v1/events/stream', {
    config: { access: 'read' },
    schema: {
      summary: 'Live watchdog state as Server-Sent Events (event "state", about once a second)',
      description: 'Each message: `{ ts, vms: [watchdog view, ...] }`. The first one comes at once.'
    }
  }, (request, reply) => {
    // HEAD (Fastify answers it with this handler): the headers of a stream, no stream.
    if (request.method === 'HEAD') return reply.code(200).header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache, no-transform').send()
    const address = normalizeAddress(request.socket.remoteAddress ?? '')
    const mine = perAddress.get(address) ?? 0
    if (mine >= MAX_STREAMS_PER_ADDRESS) {
      throw new AppError('RATE_LIMITED', `Too many live streams from ${address} (${MAX_STREAMS_PER_ADDRESS} at most per address); close a dashboard tab and retry`, { limit: MAX_STREAMS_PER_ADDRESS })
    }
    if (clients.size >= MAX_CLIENTS) {
      throw new AppError('NOT_READY', `Too many live streams (${MAX_CLIENTS}); close a dashboard and retry`)
    }
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // The connection ends with the stream: nothing waits on it for reuse when the app closes.
      connection: 'close',
      'x-accel-buffering': 'no'
    })
    res.write(`retry: 3000\n\n${message()}`)
    clients.add(res)
    perAddress.set(address, mine + 1)
    request.raw.socket.setNoDelay(true)
    let counted = true
    const drop = () => {
      clients.delete(res)
      if (!counted) return
      counted = false
      const left = (perAddress.get(address) ?? 1) - 1
      if (left <= 0) perAddress.delete(address)
      else perAddress.set(address, left)
    }
    res.on('close', drop)
    res.on('error', drop)
    timer ??= app.timers.setTimeout(send, intervalMs)
  })
}

export default fp(streamRoutes, { name: 'stream', fastify: '5.x', dependencies: ['vms'] })
