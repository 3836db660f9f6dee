// Issue 16: the service's own protections never revert a healthy guest. Floods against the
// heartbeat endpoint, from the guest's own address (QEMU user networking: everything comes from
// 127.0.0.1) and from another loopback client, while a "guest" beats once a second on the fake
// clock with the default limits (600 guest requests a minute) and the default heartbeat_timeout:
// no revert, every genuine heartbeat counted, the flood answered 429 where it is over its limit.
import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { pino } from 'pino'
import { WindowCounter } from '../../src/plugins/security.ts'
import { build, call, events } from '../api/helpers.ts'

/** QEMU user networking: the guests come from loopback, so loopback is listed as a guest network. */
const USER_NET = { guest_networks: ['127.0.0.0/8', '::1'] }

const TWO_VMS = `test://${fileURLToPath(new URL('../fixtures/two-vms.xml', import.meta.url))}`

interface FloodResult {
  /** Status of each genuine heartbeat. */
  guest: number[]
  /** Whether the watchdog had each genuine heartbeat (its seq) right after it was answered. */
  counted: boolean[]
  /** Statuses of the flood's requests. */
  flood: Map<number, number>
  /** Bodies of the guest's 429s. */
  guestLimited: any[]
}

/**
 * The guest beats (seq 1..beats) once a second of fake time; before each beat `perBeat` flood
 * requests go out. Returns what each side was answered.
 */
async function beatUnderFlood (app: FastifyInstance, run: (ms: number) => Promise<void>, options: {
  beats: number, perBeat: number, guest: (seq: number) => InjectOptions | string, flood: InjectOptions, vm?: string
}): Promise<FloodResult> {
  const result: FloodResult = { guest: [], counted: [], flood: new Map(), guestLimited: [] }
  const watchdog = app.watchdogs.get(options.vm ?? app.defaultVm)!
  for (let seq = 1; seq <= options.beats; seq++) {
    for (let i = 0; i < options.perBeat; i++) {
      const status = (await app.inject(options.flood)).statusCode
      result.flood.set(status, (result.flood.get(status) ?? 0) + 1)
    }
    const r = await call(app, options.guest(seq))
    result.guest.push(r.status)
    if (r.status !== 200) result.guestLimited.push(r.body)
    result.counted.push(watchdog.view().lastSeq === seq)
    await run(1000)
  }
  return result
}

async function reverts (app: FastifyInstance): Promise<number> {
  return (await events(app, 'revert_started')).length
}

t.test('a flood from the guest\'s own address: every heartbeat counted, no revert, 429 over the limit', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } }))
  const { app, run } = await build(t, { logger, config: { security: USER_NET } })
  const beats = 70 // past the 60 s window: the window resets on the app's clock
  const perBeat = 20
  const r = await beatUnderFlood(app, run, {
    beats,
    perBeat,
    guest: (seq) => `/api/v1/heartbeat?seq=${seq}&status=ok`,
    flood: { url: '/api/v1/heartbeat?status=flood', remoteAddress: '127.0.0.1' }
  })
  t.same(r.counted, new Array(beats).fill(true), 'the watchdog had every genuine heartbeat')
  t.equal(await reverts(app), 0, 'no revert')
  t.equal(app.watchdogs.get('test')!.view().state, 'healthy')
  const total = beats * (perBeat + 1)
  t.equal(app.watchdogs.get('test')!.view().heartbeatsTotal, total, 'the flood\'s heartbeats were counted too: a heartbeat is never lost to a limit')
  // Guest and flood share one key (same address, same VM): 600 a minute answered 200, the rest 429.
  const ok = (r.flood.get(200) ?? 0) + r.guest.filter((s) => s === 200).length
  const limited = (r.flood.get(429) ?? 0) + r.guest.filter((s) => s === 429).length
  t.equal(ok + limited, total, 'only 200 and 429')
  t.ok(limited > 0 && (r.flood.get(429) ?? 0) > 0, `the flood was answered 429 (${limited} of ${total})`)
  // The first minute: 60 × 21 requests, 600 answered 200. The next 10 s: 210, all 200.
  t.equal(ok, 600 + 10 * (perBeat + 1), 'at most 600 a minute answered 200; the window resets on the app\'s clock')
  t.ok(r.guestLimited.every((b) => b.error.code === 'RATE_LIMITED' && b.error.details.counted === true && /Heartbeat counted/.test(b.error.message)),
    'a limited genuine heartbeat is told it was counted')
  await app.close()
  const warned = lines.filter((l) => l.includes('heartbeats over the guest rate limit'))
  t.equal(warned.length, 1, 'the refused storm was logged once, not once per request')
  t.equal(lines.filter((l) => l.includes('request refused')).length, 0, 'no log line per refused heartbeat')
})

t.test('a flood from another loopback client: the guest is answered 200 throughout, the flood 429', async (t) => {
  const { app, run } = await build(t, { config: { security: USER_NET } })
  const beats = 40
  const perBeat = 20
  const r = await beatUnderFlood(app, run, {
    beats,
    perBeat,
    guest: (seq) => ({ url: `/api/v1/heartbeat?seq=${seq}&status=ok`, remoteAddress: '127.0.0.1' }),
    flood: { url: '/api/v1/heartbeat', remoteAddress: '127.0.0.2' }
  })
  t.same(r.guest, new Array(beats).fill(200), 'the guest never got 429')
  t.same(r.counted, new Array(beats).fill(true), 'the watchdog had every genuine heartbeat')
  t.equal(await reverts(app), 0, 'no revert')
  t.same(Object.fromEntries(r.flood), { 200: 600, 429: beats * perBeat - 600 }, 'the flood: 600 a minute, the rest 429')
  const limited = await call(app, { url: '/api/v1/heartbeat', remoteAddress: '127.0.0.2' })
  t.equal(limited.status, 429)
  t.ok(Number(limited.res.headers['retry-after']) >= 1, 'Retry-After is set')
})

t.test('several guests behind one address (QEMU user networking): limits per VM', async (t) => {
  const { app, run } = await build(t, { uri: TWO_VMS, config: { vm_name: 'exhibit-a', vms: [{ name: 'exhibit-b' }], security: USER_NET } })
  const beats = 40
  const r = await beatUnderFlood(app, run, {
    beats,
    perBeat: 20,
    vm: 'exhibit-a',
    guest: (seq) => ({ url: `/api/v1/heartbeat?seq=${seq}&vm=exhibit-a`, remoteAddress: '127.0.0.1' }),
    // A noisy host tool (or another guest) naming the other VM, from the same address.
    flood: { url: '/api/v1/heartbeat?vm=exhibit-b', remoteAddress: '127.0.0.1' }
  })
  t.same(r.guest, new Array(beats).fill(200), 'exhibit-a\'s guest never got 429')
  t.same(r.counted, new Array(beats).fill(true))
  t.equal(r.flood.get(429), beats * 20 - 600, 'exhibit-b\'s flood was limited')
  // The same holds for revert requests: exhibit-b's budget is spent, exhibit-a's is not.
  for (let i = 0; i < 600; i++) await app.inject({ url: '/api/v1/revert/request?reason=noise&vm=exhibit-b' })
  t.equal((await app.inject({ url: '/api/v1/revert/request?reason=noise&vm=exhibit-b' })).statusCode, 429)
  const a = await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason: 'app_crashed', vm: 'exhibit-a' } })
  t.equal(a.status, 202, 'exhibit-a\'s guest may still ask for a revert (the vm field of a JSON body counts)')
  t.equal(a.body.details.vm, 'exhibit-a')
  t.equal(a.body.details.requester, 'guest')
  const b = await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason: 'noise', vm: 'exhibit-b' } })
  t.equal(b.status, 429, 'a JSON body naming exhibit-b spends exhibit-b\'s budget, not the default VM\'s')
})

t.test('the host (loopback, not a guest network) asking for reverts: a technician, on the admin budget', async (t) => {
  const { app } = await build(t, { config: { security: { rate_limit_admin: 3 } } })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await app.inject({ url: '/api/v1/vm/restart' })).statusCode)
  t.same(statuses, [202, 202, 202, 429], 'rate_limit_admin, not rate_limit_guest (600), and no guest min interval (409)')
  const beat = await call(app, '/api/v1/heartbeat')
  t.equal(beat.status, 200, 'its heartbeats have their own (guest-sized) budget')
})

t.test('revert requests keep their limits; a heartbeat after them still counts', async (t) => {
  const { app } = await build(t, { config: { security: { rate_limit_guest: 5 } } })
  const guest = { remoteAddress: '192.168.122.15' }
  const answers: string[] = []
  for (let i = 0; i < 7; i++) {
    const r = await call(app, { url: '/api/v1/revert/request?reason=idle', ...guest })
    answers.push(`${r.status} ${r.body.details?.outcome ?? r.body.error?.code}`)
  }
  const joined = /^202 (?!started)/ // merged into the running revert
  t.match(answers, ['202 started', joined, joined, joined, joined, '429 RATE_LIMITED', '429 RATE_LIMITED'], 'one revert (the others joined it), then the rate limit')
  t.equal(answers.length, 7)
  t.equal(await reverts(app), 1, 'one revert')
  const limited = await call(app, { url: '/api/v1/vm/restart', ...guest })
  t.equal(limited.status, 429, 'EVC\'s /vm/restart shares the budget')
  t.equal(limited.body.error.code, 'RATE_LIMITED')
  t.match(limited.body.error.message, /at most 5 a minute for guest endpoints; retry in \d+ s/)
  const beat = await call(app, { url: '/api/v1/heartbeat?seq=9', ...guest })
  t.equal(beat.status, 200, 'heartbeats have their own budget')
  t.equal(app.watchdogs.get('test')!.view().lastSeq, 9)
})

t.test('token guesses on guest routes from outside the guest networks are limited', async (t) => {
  const { app } = await build(t, { config: { security: { admin_token: 'correct-horse-battery-staple-42', rate_limit_admin: 3 } } })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) {
    statuses.push((await app.inject({ url: '/api/v1/heartbeat', remoteAddress: '203.0.113.9', headers: { authorization: `Bearer wrong-guess-${i}-xxxxxxxxxx` } })).statusCode)
  }
  t.same(statuses, [403, 403, 403, 429])
  t.equal(app.watchdogs.get('test')!.view().heartbeatsTotal, 0, 'none of them counted')
})

t.test('a flood from outside the guest networks: refused 403, then 429 and not logged line by line', async (t) => {
  const lines: Array<{ level: number, msg: string }> = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } }))
  const { app } = await build(t, { logger, config: { security: { rate_limit_guest: 5 } } })
  const statuses: number[] = []
  for (let i = 0; i < 50; i++) statuses.push((await app.inject({ url: '/api/v1/heartbeat', remoteAddress: '203.0.113.9' })).statusCode)
  t.same(statuses, [...Array(5).fill(403), ...Array(45).fill(429)], 'five refusals, then the limit')
  t.equal(lines.filter((l) => l.msg === 'request refused' && l.level >= 30).length, 5, 'five info lines, not fifty')
  t.equal(app.watchdogs.get('test')!.view().heartbeatsTotal, 0, 'none of them counted')
})

t.test('WindowCounter: fixed windows on the given clock, bounded', async (t) => {
  let now = 1_000_000
  const c = new WindowCounter(60_000, () => now, 3)
  t.same(c.hit('a'), { count: 1, resetAt: now + 60_000 })
  t.equal(c.hit('a').count, 2)
  now += 59_999
  t.equal(c.hit('a').count, 3, 'same window')
  now += 1
  t.same(c.hit('a'), { count: 1, resetAt: now + 60_000 }, 'a new window')
  now -= 3_600_000
  t.equal(c.hit('a').count, 1, 'a clock set back starts a new window')
  for (const k of ['b', 'c', 'd', 'e']) c.hit(k)
  t.equal(c.size, 3, 'at most capacity keys')
  t.equal(c.hit('a').count, 1, 'the least recently hit key was dropped')
})

t.test('HEAD on the heartbeat counts nothing', async (t: Test) => {
  const { app } = await build(t)
  const head = await app.inject({ method: 'HEAD', url: '/api/v1/heartbeat?seq=1' })
  t.equal(head.statusCode, 405)
  t.equal(app.watchdogs.get('test')!.view().heartbeatsTotal, 0)
})

t.test('a guest body is not read past 1 MiB: answered from what was kept, the connection closed', async (t: Test) => {
  const { app } = await build(t)
  // 50 MiB offered lazily, 64 KiB at a time: what the server pulls is what it read.
  let pulled = 0
  const total = 50 * 1024 * 1024
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const head = Buffer.from('seq=5&status=ok&pad=')
  const body = new Readable({
    read () {
      if (pulled >= total) { this.push(null); return }
      const next = pulled === 0 ? Buffer.concat([head, chunk.subarray(head.length)]) : chunk
      pulled += next.length
      this.push(next)
    }
  })
  const res = await app.inject({ method: 'POST', url: '/api/v1/heartbeat', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body, remoteAddress: '192.168.122.50' })
  t.equal(res.statusCode, 200, res.body.slice(0, 300))
  t.equal(res.headers.connection, 'close', 'Connection: close: the unread rest goes nowhere')
  t.ok(pulled < 2 * 1024 * 1024, `stopped reading near 1 MiB (pulled ${pulled} of ${total} bytes)`)
  const answer = res.json()
  t.equal(answer.details.seq, 5, 'the heartbeat counted, with the fields of what was kept')
  t.match(answer.details.ignored, [/^body: only the first 65536 bytes read; reading stopped after 1048576 bytes/])
  t.equal(app.watchdogs.get('test')!.view().lastSeq, 5)
  body.destroy()

  // A body under the limit is still read to its end (and the connection kept).
  const under = await app.inject({ method: 'POST', url: '/api/v1/heartbeat?seq=6', payload: 'x'.repeat(1024 * 1024 - 1), headers: { 'content-type': 'text/plain' }, remoteAddress: '192.168.122.50' })
  t.equal(under.statusCode, 200)
  t.not(under.headers.connection, 'close')
  t.match(under.json().details.ignored, [/^body: only the first 65536 bytes read \(983039 more dropped\)$/])
})

/**
 * Sends HEAD (a request line and headers declaring TOTAL bytes of body) on a real socket, then the
 * body as fast as the server takes it, until the server closes: what the server pulled is
 * `written` (socket buffers included), `answer` what it said before closing.
 */
async function offerBody (t: Test, app: FastifyInstance, head: (port: number) => string, total: number): Promise<{ written: number, answer: string }> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const socket = connect({ host: '127.0.0.1', port })
  t.teardown(() => { socket.destroy() })
  let written = 0
  let answer = ''
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => { answer += d })
  socket.on('error', () => {}) // EPIPE/ECONNRESET once the server has closed: expected
  const closed = new Promise<void>((resolve) => { socket.once('close', () => { resolve() }) })
  socket.write(head(port))
  const chunk = Buffer.alloc(64 * 1024, 'x')
  // The client writes as fast as the server takes it: a server that stops reading stops it.
  while (!socket.destroyed && written < total) {
    written += chunk.length
    if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed])
  }
  await closed
  return { written, answer }
}

t.test('on a real socket: a 50 MiB heartbeat body is not read, the answer closes the connection', async (t: Test) => {
  const { app } = await build(t, { config: { security: USER_NET } })
  const total = 50 * 1024 * 1024
  const { written, answer } = await offerBody(t, app, (port) => `POST /api/v1/heartbeat?seq=3 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/plain\r\nContent-Length: ${total}\r\n\r\n`, total)
  t.equal(app.watchdogs.get('test')!.view().lastSeq, 3, 'the heartbeat counted')
  t.ok(written < total / 4, `the server stopped taking the body (the client got ${written} of ${total} bytes out, socket buffers included)`)
  // The answer is on its way before the close; a reset (the unread rest) may in principle beat it.
  if (answer !== '') t.match(answer, /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*connection: close\r\n/i, 'answered 200 with Connection: close')
})

t.test('details.ignored is capped: a body of thousands of unknown fields gets a short answer', async (t: Test) => {
  const { app } = await build(t)
  const keys = Array.from({ length: 12_000 }, (_, i) => `k${i}=`).join('&')
  const form = ('seq=9&' + keys).slice(0, 64 * 1024)
  const fieldCount = form.split('&').filter((p) => p !== '').length - 1 // not seq
  const res = await app.inject({ method: 'POST', url: '/api/v1/heartbeat', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form, remoteAddress: '192.168.122.50' })
  t.equal(res.statusCode, 200)
  const ignored: string[] = res.json().details.ignored
  t.equal(ignored.length, 21, 'the first 20, then a count')
  t.equal(ignored[0], 'k0: not a field of this endpoint')
  t.equal(ignored[20], `… and ${fieldCount - 20} more not shown`)
  t.ok(res.body.length < 4096, `a short answer (${res.body.length} bytes for a ${form.length}-byte body)`)
  t.equal(res.json().details.seq, 9, 'the heartbeat counted')
  const revert = await app.inject({ method: 'POST', url: '/api/v1/revert/request', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form, remoteAddress: '192.168.122.50' })
  const answered = revert.json()
  t.equal((answered.details ?? answered.error.details).ignored.length, 21, `the same on revert requests (${revert.statusCode})`)
})

t.test('on a real socket: a request refused before its body is read closes the connection instead of reading 50 MiB', async (t: Test) => {
  const { app } = await build(t, { config: { security: USER_NET } })
  const total = 50 * 1024 * 1024
  // Refused on onRequest (DNS rebinding: a name that is not the service's), before any body parser.
  const { written, answer } = await offerBody(t, app, (port) => `POST /api/v1/vm/stop HTTP/1.1\r\nHost: attacker.example:${port}\r\nContent-Type: text/plain\r\nContent-Length: ${total}\r\n\r\n`, total)
  t.ok(written < total / 4, `the server did not take the body (the client got ${written} of ${total} bytes out, socket buffers included)`)
  if (answer !== '') t.match(answer, /^HTTP\/1\.1 403 Forbidden\r\n(.*\r\n)*connection: close\r\n/i, 'answered 403 with Connection: close')
  t.equal((await app.hypervisor.domainState('test')).state, 'running', 'the VM was not stopped')
})

t.test('a refused request without a body keeps its connection (a flood of refused GETs does not churn sockets)', async (t: Test) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/api/v1/status', headers: { host: 'attacker.example' }, remoteAddress: '127.0.0.1' })
  t.equal(res.statusCode, 403)
  t.not(res.headers.connection, 'close')
})

t.test('on a real socket: a request the router refuses (a bad %-escape) does not have its 50 MiB body read either', async (t: Test) => {
  const { app } = await build(t)
  const total = 50 * 1024 * 1024
  const { written, answer } = await offerBody(t, app, (port) => `POST /api/v1/vm/%zz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/plain\r\nContent-Length: ${total}\r\n\r\n`, total)
  t.ok(written < total / 4, `the server did not take the body (the client got ${written} of ${total} bytes out, socket buffers included)`)
  if (answer !== '') t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n(.*\r\n)*connection: close\r\n/i, 'answered 400 with Connection: close')
})
