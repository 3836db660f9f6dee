// WebhookNotifier against a real HTTP server on 127.0.0.1: payload, retry after a 500,
// per-attempt timeout, event filter, bounded queue, and that notify() never waits.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebhookNotifier, loggableUrl, type AlertPayload, type WebhookTarget } from '../../src/alerts/webhooks.ts'

interface Received { body: AlertPayload, headers: IncomingMessage['headers'], at: number }

/** A receiver whose answer to the n-th request (0-based) is decided by `respond`. */
async function receiver (t: Test, respond: (n: number, req: IncomingMessage, res: ServerResponse) => void) {
  const received: Received[] = []
  let n = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertPayload, headers: req.headers, at: Date.now() })
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

t.test('posts the alert as JSON, with configured headers', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(204).end() })
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(r.url, { headers: { authorization: 'Bearer receiver-key' } })], queueSize: 10, log })
  notifier.notify(payload('exhausted'))
  await notifier.idle()
  t.equal(r.received.length, 1)
  t.same(r.received[0]!.body, payload('exhausted'))
  t.equal(r.received[0]!.headers['content-type'], 'application/json')
  t.equal(r.received[0]!.headers.authorization, 'Bearer receiver-key')
  t.same(notifier.stats(), [{ url: loggableUrl(r.url), delivered: 1, failed: 0, dropped: 0 }])
  const logged = JSON.stringify(log.lines)
  t.notMatch(logged, 's3cret', 'the query string (may hold a key) is not logged')
  t.notMatch(logged, 'receiver-key', 'headers are not logged')
})

t.test('retries after a 500 with backoff, then succeeds', async (t) => {
  const r = await receiver(t, (n, _req, res) => { res.writeHead(n < 2 ? 500 : 200).end() })
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(r.url)], queueSize: 10, log, retryDelayMs: 50 })
  notifier.notify(payload('revert_storm'))
  await notifier.idle()
  t.equal(r.received.length, 3, 'two failures, one success')
  const gaps = [r.received[1]!.at - r.received[0]!.at, r.received[2]!.at - r.received[1]!.at]
  t.ok(gaps[0]! >= 45, `first retry waited ${gaps[0]} ms (>= 50 ms backoff)`)
  t.ok(gaps[1]! >= 95, `second retry waited ${gaps[1]} ms (doubled)`)
  t.same(notifier.stats()[0], { url: loggableUrl(r.url), delivered: 1, failed: 0, dropped: 0 })
  t.match(log.lines.filter((l) => l.level === 'warn').map((l) => l.obj['problem']), ['HTTP 500', 'HTTP 500'])
})

t.test('gives up after the configured retries', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(503).end() })
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(r.url, { retries: 2 })], queueSize: 10, log, retryDelayMs: 10 })
  notifier.notify(payload('recovered'))
  await notifier.idle()
  t.equal(r.received.length, 3, '1 attempt + 2 retries')
  t.equal(notifier.stats()[0]!.failed, 1)
  t.match(log.lines.at(-1), { level: 'warn', msg: 'alert not delivered: giving up' })
})

t.test('each attempt times out after timeout_seconds', async (t) => {
  let firstClosedAt = 0
  const r = await receiver(t, (n, req, res) => {
    if (n === 0) { req.socket.on('close', () => { firstClosedAt = Date.now() }); return } // never answer
    res.writeHead(200).end()
  })
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(r.url, { timeout_seconds: 0.3, retries: 1 })], queueSize: 10, log, retryDelayMs: 10 })
  const started = Date.now()
  notifier.notify(payload('exhausted'))
  await notifier.idle()
  const elapsed = Date.now() - started
  t.equal(r.received.length, 2, 'the hanging attempt was abandoned and retried')
  t.ok(elapsed >= 290 && elapsed < 2000, `took ${elapsed} ms with a 300 ms timeout`)
  t.ok(firstClosedAt > 0 && firstClosedAt - started >= 290, 'the hanging request was aborted at the timeout')
  t.match(log.lines.find((l) => l.level === 'warn')?.obj, { problem: 'no answer within 0.3 s' })
})

t.test('a refused connection is a failure with its code', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(200).end() })
  const dead = `http://127.0.0.1:${await closedPort()}/nothing-listens-here`
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(dead, { retries: 0 }), target(r.url)], queueSize: 10, log })
  notifier.notify(payload('exhausted'))
  await notifier.idle()
  t.equal(r.received.length, 1, 'a dead webhook does not hold up the others')
  t.match(log.lines.find((l) => l.level === 'warn')?.obj, { problem: 'ECONNREFUSED' })
})

t.test('only the events a webhook asked for', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(200).end() })
  const notifier = new WebhookNotifier({ webhooks: [target(r.url, { events: ['recovered'] })], queueSize: 10, log: collectingLog() })
  notifier.notify(payload('exhausted'))
  notifier.notify(payload('recovered'))
  await notifier.idle()
  t.same(r.received.map((x) => x.body.event), ['recovered'])
})

t.test('notify returns at once; a full queue drops the oldest', async (t) => {
  const release: Array<() => void> = []
  const r = await receiver(t, (_n, _req, res) => { release.push(() => res.writeHead(200).end()) })
  const log = collectingLog()
  const notifier = new WebhookNotifier({ webhooks: [target(r.url)], queueSize: 2, log })
  const started = process.hrtime.bigint()
  for (const vm of ['a', 'b', 'c', 'd']) notifier.notify(payload('exhausted', vm))
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  t.ok(ms < 50, `4 notify() calls took ${ms.toFixed(2)} ms while the receiver hangs`)
  // 'a' is in flight; 'b','c' waited; 'd' pushed 'b' out.
  while (release.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const drain = setInterval(() => release.shift()?.(), 5)
  await notifier.idle()
  clearInterval(drain)
  t.same(r.received.map((x) => x.body.vm), ['a', 'c', 'd'])
  t.equal(notifier.stats()[0]!.dropped, 1)
  t.match(log.lines.find((l) => l.msg.includes('dropped')), { obj: { vm: 'b' } })
})

t.test('close() stops retrying and drops what waits', async (t) => {
  const r = await receiver(t, (_n, _req, res) => { res.writeHead(500).end() })
  const notifier = new WebhookNotifier({ webhooks: [target(r.url, { retries: 10 })], queueSize: 10, log: collectingLog(), retryDelayMs: 10_000 })
  notifier.notify(payload('exhausted'))
  notifier.notify(payload('recovered'))
  while (r.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const started = Date.now()
  await notifier.close()
  t.ok(Date.now() - started < 1000, 'close does not wait out the 10 s backoff')
  t.equal(r.received.length, 1)
  notifier.notify(payload('exhausted'))
  await notifier.idle()
  t.equal(r.received.length, 1, 'nothing is sent after close')
})
