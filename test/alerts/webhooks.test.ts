// WebhookNotifier against a real HTTP server on 127.0.0.1: payload, retry after a 500,
// per-attempt timeout, event filter, bounded queue, and that notify() never waits.
// The receiver is real; the notifier's timers (attempt timeout, backoff) run on a fake clock, so
// the tests move time instead of sleeping and assert when a timer fires, not how long things took.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebhookNotifier, loggableUrl, type AlertPayload, type WebhookNotifierOptions, type WebhookTarget } from '../../src/alerts/webhooks.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

interface Received { body: AlertPayload, headers: IncomingMessage['headers'] }

/**
 * Waits (real time, polling) for something the loopback I/O brings about. The bound only turns
 * a hang into a failure that says what was awaited; nothing here is near it.
 */
async function waitFor (what: string, check: () => boolean, hangMs = 60_000): Promise<void> {
  const until = Date.now() + hangMs
  while (!check()) {
    if (Date.now() > until) throw new Error(`still waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A promise that should settle without the fake clock moving; a hang becomes a failure naming it. */
async function settles<T> (what: string, promise: Promise<T>, hangMs = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`did not settle: ${what}`)), hangMs) })
  try {
    return await Promise.race([promise, hang])
  } finally {
    clearTimeout(timer)
  }
}

function notifier (clock: FakeClock, options: Omit<WebhookNotifierOptions, 'timers' | 'clock'>): WebhookNotifier {
  return new WebhookNotifier({ ...options, timers: clock, clock })
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z')

/** A receiver whose answer to the n-th request (0-based) is decided by `respond`. */
async function receiver (t: Test, respond: (n: number, req: IncomingMessage, res: ServerResponse) => void) {
  const received: Received[] = []
  let n = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertPayload, headers: req.headers })
      respond(n++, req, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?key=s3cret`, received }
}

function collectingLog () {
  const lines: Array<{ level: string, obj: Record<string, unknown>, msg: string }> = []
  return {
    lines,
    info: (obj: object, msg: string) => { lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }) },
    warn: (obj: object, msg: string) => { lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }) }
  }
}

/** A loopback port that was free a moment ago and is closed now. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const payload = (event: AlertPayload['event'], vm = 'kiosk-1'): AlertPayload => ({
  service: 'kiosk-vm-watchdog', event, vm, reason: `${event} happened`, at: new Date(0).toISOString(), host: 'museum-host-3', fields: { count: 5 }
})

const target = (url: string, extra: Partial<WebhookTarget> = {}): WebhookTarget =>
  ({ url, events: ['exhausted', 'revert_storm', 'recovered'], timeout_seconds: 2, retries: 3, headers: {}, ...extra })

const warnings = (log: ReturnType<typeof collectingLog>) => log.lines.filter((l) => l.level === 'warn')

t.test('posts the alert as JSON, with configured headers', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(204).end() })
  const log = collectingLog()
  const clock = new FakeClock(T0)
  const n = notifier(clock, { webhooks: [target(r.url, { headers: { authorization: 'Bearer receiver-key' } })], queueSize: 10, log })
  n.notify(payload('exhausted'))
  await settles('delivery', n.idle())
  t.equal(r.received.length, 1)
  t.same(r.received[0]!.body, payload('exhausted'))
  t.equal(r.received[0]!.headers['content-type'], 'application/json')
  t.equal(r.received[0]!.headers.authorization, 'Bearer receiver-key')
  t.same(n.stats(), [{ url: loggableUrl(r.url), delivered: 1, failed: 0, dropped: 0 }])
  t.equal(clock.pending, 0, 'the attempt\'s timeout timer is cleared once it is answered')
  const logged = JSON.stringify(log.lines)
  t.notMatch(logged, 's3cret', 'the query string (may hold a key) is not logged')
  t.notMatch(logged, 'receiver-key', 'headers are not logged')
})

t.test('retries after a 500 with backoff, then succeeds', async (t) => {
  const r = await receiver(t, (n, _req, res) => { res.writeHead(n < 2 ? 500 : 200).end() })
  const log = collectingLog()
  const clock = new FakeClock(T0)
  const n = notifier(clock, { webhooks: [target(r.url)], queueSize: 10, log, retryDelayMs: 50 })
  n.notify(payload('revert_storm'))

  await waitFor('the first failure', () => warnings(log).length === 1)
  t.equal(r.received.length, 1)
  t.equal(clock.pending, 1, 'a backoff timer is armed')
  clock.advance(49)
  t.equal(clock.pending, 1, 'no retry before 50 ms')
  clock.advance(1)
  t.equal(clock.pending, 0, 'the backoff ends at 50 ms')
  await waitFor('the second failure', () => warnings(log).length === 2)
  t.equal(r.received.length, 2)
  clock.advance(99)
  t.equal(clock.pending, 1, 'the second backoff is doubled: still waiting at 99 ms')
  clock.advance(1)
  t.equal(clock.pending, 0, 'and ends at 100 ms')
  await settles('the third attempt', n.idle())

  t.equal(r.received.length, 3, 'two failures, one success')
  t.same(n.stats()[0], { url: loggableUrl(r.url), delivered: 1, failed: 0, dropped: 0 })
  t.same(warnings(log).map((l) => [l.obj['problem'], l.obj['retryInMs']]), [['HTTP 500', 50], ['HTTP 500', 100]])
})

t.test('gives up after the configured retries', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(503).end() })
  const log = collectingLog()
  const clock = new FakeClock(T0)
  const n = notifier(clock, { webhooks: [target(r.url, { retries: 2 })], queueSize: 10, log, retryDelayMs: 10 })
  n.notify(payload('recovered'))
  await waitFor('the first failure', () => warnings(log).length === 1)
  clock.advance(10)
  await waitFor('the second failure', () => warnings(log).length === 2)
  clock.advance(20)
  await settles('giving up', n.idle())
  t.equal(r.received.length, 3, '1 attempt + 2 retries')
  t.equal(n.stats()[0]!.failed, 1)
  t.match(log.lines.at(-1), { level: 'warn', msg: 'alert not delivered: giving up', obj: { retryInMs: null } })
  t.equal(clock.pending, 0, 'no timer left behind')
})

t.test('each attempt times out after timeout_seconds', async (t) => {
  let firstClosed = false
  const r = await receiver(t, (n, req, res) => {
    if (n === 0) { req.socket.on('close', () => { firstClosed = true }); return } // never answer
    res.writeHead(200).end()
  })
  const log = collectingLog()
  const clock = new FakeClock(T0)
  const n = notifier(clock, { webhooks: [target(r.url, { timeout_seconds: 0.3, retries: 1 })], queueSize: 10, log, retryDelayMs: 10 })
  n.notify(payload('exhausted'))
  await waitFor('the first request at the receiver', () => r.received.length === 1)
  t.equal(clock.pending, 1, 'the attempt\'s timeout is armed')
  clock.advance(299)
  t.equal(clock.pending, 1, 'not timed out at 299 ms')
  t.equal(warnings(log).length, 0)
  clock.advance(1)
  t.equal(clock.pending, 0, 'the timeout fires at 300 ms')
  await waitFor('the hanging request to be aborted', () => firstClosed)
  await waitFor('the failure to be logged', () => warnings(log).length === 1)
  t.match(warnings(log)[0]?.obj, { problem: 'no answer within 0.3 s', retryInMs: 10 })
  clock.advance(10)
  await settles('the retry', n.idle())
  t.equal(r.received.length, 2, 'the hanging attempt was abandoned and retried')
  t.same(n.stats()[0], { url: loggableUrl(r.url), delivered: 1, failed: 0, dropped: 0 })
})

t.test('a refused connection is a failure with its code', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(200).end() })
  const dead = `http://127.0.0.1:${await closedPort()}/nothing-listens-here`
  const log = collectingLog()
  const n = notifier(new FakeClock(T0), { webhooks: [target(dead, { retries: 0 }), target(r.url)], queueSize: 10, log })
  n.notify(payload('exhausted'))
  await settles('both deliveries', n.idle())
  t.equal(r.received.length, 1, 'a dead webhook does not hold up the others')
  t.match(log.lines.find((l) => l.level === 'warn')?.obj, { problem: 'ECONNREFUSED' })
})

t.test('only the events a webhook asked for', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(200).end() })
  const n = notifier(new FakeClock(T0), { webhooks: [target(r.url, { events: ['recovered'] })], queueSize: 10, log: collectingLog() })
  n.notify(payload('exhausted'))
  n.notify(payload('recovered'))
  await settles('delivery', n.idle())
  t.same(r.received.map((x) => x.body.event), ['recovered'])
})

t.test('notify returns at once; a full queue drops the oldest', async (t) => {
  let holding = true
  const held: ServerResponse[] = []
  const r = await receiver(t, (_n, _req, res) => { if (holding) held.push(res); else res.writeHead(200).end() })
  const log = collectingLog()
  const n = notifier(new FakeClock(T0), { webhooks: [target(r.url)], queueSize: 2, log })
  const returned = ['a', 'b', 'c', 'd'].map((vm) => n.notify(payload('exhausted', vm)))
  // Synchronously, before any I/O could happen: nothing waited for the receiver.
  t.same(returned, [undefined, undefined, undefined, undefined], 'notify() returns nothing to wait for')
  t.equal(r.received.length, 0, 'all four calls returned before the receiver saw a request')
  // 'a' is in flight; 'b','c' waited; 'd' pushed 'b' out.
  t.same(n.stats()[0], { url: loggableUrl(r.url), delivered: 0, failed: 0, dropped: 1 })
  await waitFor('the first request, held by the receiver', () => held.length === 1)
  holding = false
  held.shift()!.writeHead(200).end()
  await settles('the queue to drain', n.idle())
  t.same(r.received.map((x) => x.body.vm), ['a', 'c', 'd'])
  t.equal(n.stats()[0]!.dropped, 1)
  t.match(log.lines.find((l) => l.msg.includes('dropped')), { obj: { vm: 'b' } })
})

t.test('close() stops retrying and drops what waits', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(500).end() })
  const log = collectingLog()
  const clock = new FakeClock(T0)
  const n = notifier(clock, { webhooks: [target(r.url, { retries: 10 })], queueSize: 10, log, retryDelayMs: 10_000 })
  n.notify(payload('exhausted'))
  n.notify(payload('recovered'))
  await waitFor('the first failure', () => warnings(log).length === 1)
  t.equal(clock.pending, 1, 'waiting out a 10 s backoff')
  // The fake clock does not move: close() can only return if it does not wait for the backoff.
  await settles('close()', n.close())
  t.equal(clock.pending, 0, 'the backoff timer is cleared')
  t.equal(r.received.length, 1)
  n.notify(payload('exhausted'))
  await settles('idle after close', n.idle())
  t.equal(r.received.length, 1, 'nothing is sent after close')
})
