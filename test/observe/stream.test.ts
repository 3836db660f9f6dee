// GET /api/v1/events/stream over a real loopback socket: first message at once, the watchdog's
// changes and the heartbeat-age tick, at most one message a second, cleanup on disconnect and on
// close. The app runs on a fake clock: its ticks fire when the test moves time, and each message's
// `ts` (the app's clock when it was sent) says exactly when that was.
import t from 'tap'
import { get, type ClientRequest, type IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { build } from '../helpers/app.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import type { StreamMessage } from '../../src/routes/stream.ts'

interface Received { event: string, data: StreamMessage }

const T0 = Date.parse('2026-01-01T00:00:00.000Z')

/** Only turns a hang into a failure that names what was awaited; nothing here comes near it. */
const HANG_MS = 60_000

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

async function waitFor (what: string, check: () => boolean): Promise<void> {
  const until = Date.now() + HANG_MS
  while (!check()) {
    if (Date.now() > until) throw new Error(`still waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Opens the stream (node:http, no connection pool: fetch's pool may open a spare connection that
 * the server then waits for at close) and collects its messages until stop() or the server ends it.
 */
async function subscribe (url: string, headers: Record<string, string> = {}) {
  const messages: Received[] = []
  let ended = false
  let request: ClientRequest | null = null
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    request = get(`${url}/api/v1/events/stream`, { headers, agent: false }, resolve)
    request.on('error', reject)
  })
  const done = new Promise<void>((resolve) => {
    let buf = ''
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      buf += chunk
      let end
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end)
        buf = buf.slice(end + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1]
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (event && data) messages.push({ event, data: JSON.parse(data) as StreamMessage })
      }
    })
    res.on('close', () => { ended = true; resolve() })
    res.on('error', () => undefined)
  })
  const next = async (what: string, pred: (m: Received) => boolean): Promise<Received> => {
    await waitFor(what, () => messages.some(pred))
    return messages.find(pred)!
  }
  return { res, messages, next, stop: () => { request!.destroy() }, done, get ended () { return ended } }
}

t.test('streams the watchdog view: at once, on change, and every second', async (t) => {
  const clock = new FakeClock(T0)
  const { app } = await build(t, { clock, timers: clock })
  const url = await listen(app)
  const s = await subscribe(url)
  t.teardown(s.stop)
  t.equal(s.res.statusCode, 200)
  t.match(s.res.headers['content-type'], /^text\/event-stream/)
  t.equal(s.res.headers['cache-control'], 'no-cache, no-transform')

  const first = await s.next('the first message', () => true)
  t.equal(first.event, 'state')
  t.match(first.data.vms, [{ vm: 'test', state: 'starting', heartbeats_total: 0, last_heartbeat: null }])
  t.equal(first.data.ts, T0, 'carries the server time')
  t.equal(app.liveStreams(), 1)

  const w = app.watchdogs.get('test')!
  w.heartbeat({ seq: 7 })
  const changed = await s.next('the change', (m) => m.data.vms[0]?.heartbeats_total === 1)
  t.match(changed.data.vms[0], { state: 'healthy', last_seq: 7 })
  t.equal(changed.data.ts, T0, 'a change goes out at once (the clock has not moved)')

  // A tick without any change still comes (the dashboard's heartbeat age), a second after the last message.
  const before = s.messages.length
  clock.advance(999)
  clock.advance(1)
  const tick = await s.next('the tick', (m) => s.messages.indexOf(m) >= before)
  t.equal(tick.data.vms[0]!.heartbeats_total, 1, 'a tick repeats the current view')
  // In order on one socket: anything sent before the tick has arrived before it.
  t.same(s.messages.slice(before).map((m) => m.data.ts), [T0 + 1000], 'one tick, at 1000 ms, none before')
})

t.test('at most one message a second, however busy the watchdog', async (t) => {
  const clock = new FakeClock(T0)
  const { app } = await build(t, { clock, timers: clock })
  const url = await listen(app)
  const s = await subscribe(url)
  t.teardown(s.stop)
  await s.next('the first message', () => true)
  const w = app.watchdogs.get('test')!
  // 52 heartbeats and maintenance flips, one every 50 ms for 2.6 s: many 'change' events.
  const beatsAt: number[] = []
  for (let seq = 1; seq <= 52; seq++) {
    clock.advance(50)
    w.heartbeat({ seq })
    beatsAt.push(clock.now())
    if (seq % 5 === 0) await w.setMaintenance(30)
    if (seq % 5 === 2) await w.clearMaintenance()
  }
  const end = clock.now()
  // A tick after the burst: once it has arrived, so has everything sent before it.
  clock.advance(1000)
  await s.next('a tick after the burst', (m) => m.data.ts > end)

  const during = s.messages.filter((m) => m.data.ts > T0 && m.data.ts <= end)
  t.equal(during.length, 3, '3 messages in 2.6 s of constant changes')
  t.equal(during[0]?.data.ts, T0 + 50, 'the first change went out at once')
  for (let i = 1; i < during.length; i++) {
    const gap = during[i]!.data.ts - during[i - 1]!.data.ts
    t.ok(gap >= 1000, `gap ${gap} ms >= 1 s`)
  }
  for (const m of during) {
    const total = m.data.vms[0]!.heartbeats_total
    // The latest view: every heartbeat before the message, and the one that may have caused it.
    t.ok(total >= beatsAt.filter((at) => at < m.data.ts).length && total <= beatsAt.filter((at) => at <= m.data.ts).length,
      `the message at +${m.data.ts - T0} ms carries the latest view (${total} heartbeats)`)
  }
})

t.test('a client that goes away is dropped; closing the app ends the streams', async (t) => {
  const { app } = await build(t)
  const url = await listen(app)
  const a = await subscribe(url)
  const b = await subscribe(url)
  await a.next('a\'s first message', () => true)
  await b.next('b\'s first message', () => true)
  t.equal(app.liveStreams(), 2)
  a.stop()
  await a.done
  await waitFor('the server to drop the aborted client', () => app.liveStreams() === 1)
  t.equal(app.liveStreams(), 1, 'the aborted client is gone')
  // b never ends on its own: close() returns only if it ends the stream instead of waiting for it.
  const closed = app.close().then(() => 'closed')
  await waitFor('app.close() while a stream is open', () => b.ended)
  t.equal(await closed, 'closed', 'close does not wait for the open stream')
  await b.done
  t.ok(b.ended, 'the open stream was ended by the server')
  t.equal(app.liveStreams(), 0)
})

t.test('the stream is read access: refused with read_requires_token and no token', async (t) => {
  const { app } = await build(t, { config: { security: { admin_token: 'a-token-of-sufficient-length', read_requires_token: true } } })
  const res = await app.inject({ url: '/api/v1/events/stream' })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error.code, 'UNAUTHORIZED')
})
