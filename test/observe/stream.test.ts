// GET /api/v1/events/stream over a real loopback socket: first message at once, the watchdog's
// changes and the heartbeat-age tick, at most about one message a second, cleanup on disconnect
// and on close.
import t from 'tap'
import { get, type ClientRequest, type IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { testApp } from '../security/helpers.ts'
import type { StreamMessage } from '../../src/routes/stream.ts'

interface Received { at: number, event: string, data: StreamMessage }

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
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
        if (event && data) messages.push({ at: Date.now(), event, data: JSON.parse(data) as StreamMessage })
      }
    })
    res.on('close', () => { ended = true; resolve() })
    res.on('error', () => undefined)
  })
  const next = async (pred: (m: Received) => boolean, timeoutMs = 5000): Promise<Received> => {
    const until = Date.now() + timeoutMs
    for (; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 10))) {
      const found = messages.find(pred)
      if (found) return found
    }
    throw new Error('no such message within ' + timeoutMs + ' ms')
  }
  return { res, messages, next, stop: () => { request!.destroy() }, done, get ended () { return ended } }
}

t.test('streams the watchdog view: at once, on change, and every second', async (t) => {
  const app = await testApp(t)
  const url = await listen(app)
  const s = await subscribe(url)
  t.teardown(s.stop)
  t.equal(s.res.statusCode, 200)
  t.match(s.res.headers['content-type'], /^text\/event-stream/)
  t.equal(s.res.headers['cache-control'], 'no-cache, no-transform')

  const first = await s.next(() => true, 500)
  t.equal(first.event, 'state')
  t.match(first.data.vms, [{ vm: 'test', state: 'starting', heartbeatsTotal: 0, lastHeartbeat: null }])
  t.ok(Math.abs(first.data.ts - Date.now()) < 5000, 'carries the server time')
  t.equal(app.liveStreams(), 1)

  const w = app.watchdogs.get('test')!
  w.heartbeat({ seq: 7 })
  const changed = await s.next((m) => m.data.vms[0]?.heartbeatsTotal === 1, 2500)
  t.match(changed.data.vms[0], { state: 'healthy', lastSeq: 7 })

  // A tick without any change still comes (the dashboard's heartbeat age).
  const before = s.messages.length
  const tick = await s.next((m) => s.messages.indexOf(m) >= before, 2500)
  t.equal(tick.data.vms[0]!.heartbeatsTotal, 1, 'a tick repeats the current view')
})

t.test('at most about one message a second, however busy the watchdog', async (t) => {
  const app = await testApp(t)
  const url = await listen(app)
  const s = await subscribe(url)
  t.teardown(s.stop)
  await s.next(() => true)
  const w = app.watchdogs.get('test')!
  const started = Date.now()
  // 50 heartbeats and maintenance flips over ~2.5 s: many 'change' events.
  let seq = 0
  const spam = setInterval(() => {
    w.heartbeat({ seq: ++seq })
    if (seq % 5 === 0) w.setMaintenance(30)
    if (seq % 5 === 2) w.clearMaintenance()
  }, 50)
  await new Promise((resolve) => setTimeout(resolve, 2600))
  clearInterval(spam)
  const during = s.messages.filter((m) => m.at > started)
  t.ok(during.length >= 2 && during.length <= 3, `${during.length} messages in 2.6 s of constant changes`)
  for (let i = 1; i < during.length; i++) {
    const gap = during[i]!.at - during[i - 1]!.at
    t.ok(gap >= 900, `gap ${gap} ms >= ~1 s`)
  }
  t.ok(during.at(-1)!.data.vms[0]!.heartbeatsTotal > 10, 'and the messages carry the latest view')
})

t.test('a client that goes away is dropped; closing the app ends the streams', async (t) => {
  const app = await testApp(t)
  const url = await listen(app)
  const a = await subscribe(url)
  const b = await subscribe(url)
  await a.next(() => true)
  await b.next(() => true)
  t.equal(app.liveStreams(), 2)
  a.stop()
  await a.done
  const until = Date.now() + 2000
  while (app.liveStreams() !== 1 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(app.liveStreams(), 1, 'the aborted client is gone')
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, 'close does not wait for the open stream')
  await b.done
  t.ok(b.ended, 'the open stream was ended by the server')
  t.equal(app.liveStreams(), 0)
})

t.test('the stream is read access: refused with read_requires_token and no token', async (t) => {
  const app = await testApp(t, { config: { security: { admin_token: 'a-token-of-sufficient-length', read_requires_token: true } } })
  const res = await app.inject({ url: '/api/v1/events/stream' })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error.code, 'UNAUTHORIZED')
})
