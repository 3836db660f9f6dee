// Issue 13, point 6, as the attacks: one client holding every live stream, HEAD on the stream,
// a flood of refused revert requests rotating the audit history away, a 10 MB line in
// audit.jsonl, and audit.jsonl that is a directory.
import t from 'tap'
import { get, type IncomingMessage } from 'node:http'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { MAX_STREAMS_PER_ADDRESS } from '../../src/routes/stream.ts'
import { AuditLog } from '../../src/store/index.ts'
import { assertError, build, call, events, scratchDir } from './helpers.ts'

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as { port: number }).port
}

/** Opens the stream from `localAddress`; resolves with the response (status, headers) once they arrive. */
function openStream (port: number, localAddress: string): Promise<{ res: IncomingMessage, body: () => string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/api/v1/events/stream', localAddress, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('error', () => undefined)
      resolve({ res, body: () => text })
    })
    req.on('error', reject)
  })
}

async function waitFor (what: string, check: () => boolean): Promise<void> {
  const end = Date.now() + 30_000
  while (!check()) {
    if (Date.now() > end) throw new Error(`still waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('one address cannot hold every live stream: 429 past the per-address limit, others still get theirs', async (t) => {
  const { app } = await build(t)
  const port = await listen(app)
  const mine = []
  for (let i = 0; i < MAX_STREAMS_PER_ADDRESS; i++) mine.push(await openStream(port, '127.0.0.1'))
  t.same(mine.map((s) => s.res.statusCode), Array(MAX_STREAMS_PER_ADDRESS).fill(200))
  const refused = await openStream(port, '127.0.0.1')
  t.equal(refused.res.statusCode, 429, 'one more from the same address: 429')
  await waitFor('the 429 body', () => { try { JSON.parse(refused.body()); return true } catch { return false } })
  const body = JSON.parse(refused.body())
  t.equal(body.error.code, 'RATE_LIMITED')
  t.equal(body.detail, body.error.message, 'detail, as EVC\'s clients read it')
  t.match(body.error.message, new RegExp(`Too many live streams from 127\\.0\\.0\\.1 \\(${MAX_STREAMS_PER_ADDRESS} at most per address\\)`))
  const dashboard = await openStream(port, '127.0.0.2')
  t.equal(dashboard.res.statusCode, 200, 'another address (the dashboard) still gets a stream')
  t.equal(app.liveStreams(), MAX_STREAMS_PER_ADDRESS + 1)

  mine[0]!.res.destroy()
  await waitFor('the server drops the closed stream', () => app.liveStreams() === MAX_STREAMS_PER_ADDRESS)
  const again = await openStream(port, '127.0.0.1')
  t.equal(again.res.statusCode, 200, 'a closed stream frees its slot')
  for (const s of [...mine, dashboard, again]) s.res.destroy()
})

t.test('HEAD on the stream answers at once, with the stream\'s headers and no body', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ method: 'HEAD', url: '/api/v1/events/stream' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  t.equal(res.body, '')
  t.equal(app.liveStreams(), 0, 'no stream was opened')
})

t.test('a flood of refused revert requests: counted and summarised, not a line each', async (t) => {
  const { app, dataDir, run } = await build(t)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' })).status, 200)
  const before = statSync(join(dataDir, 'audit.jsonl')).size
  const N = 500
  for (let i = 0; i < N; i++) {
    const r = await call(app, { url: `/api/v1/revert/request?reason=flood_${i % 7}`, remoteAddress: '192.168.122.15' })
    if (r.status !== 409) t.fail(`request ${i}: ${r.status}`)
  }
  const during = statSync(join(dataDir, 'audit.jsonl')).size - before
  t.ok(during < 1024, `while the flood lasts: one line for its first refusal (${during} bytes, not ~${N * 200})`)
  t.same((await call(app, '/api/v1/status')).body.watchdog.counters.requests, { refused: N }, 'every request is counted')
  await run(60_000)
  const [summary] = await events(app, 'revert_requests_summary')
  t.match(summary, { vm: 'test', outcome: 'refused', count: N - 1, sources: { guest: N - 1 } })
  t.equal(Object.values(summary!.reasons as Record<string, number>).reduce((a, b) => a + b, 0), N - 1)
  t.match(summary!.why, { [Object.keys(summary!.why)[0]!]: N - 1 }, 'why they were refused')
  const total = statSync(join(dataDir, 'audit.jsonl')).size - before
  t.ok(total < 2048, `${N} refusals cost ${total} bytes of audit trail`)
  t.comment(`audit bytes for ${N} refused requests: ${total} (one line each would be ~${(N * 200 / 1024).toFixed(0)} KiB)`)
})

t.test('/events with a 10 MB line in audit.jsonl: the entries around it, the line skipped, each byte read once', async (t) => {
  const dir = scratchDir(t)
  const entry = (i: number) => JSON.stringify({ ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), vm: 'test', kind: 'note', reason: `n${i}` }) + '\n'
  writeFileSync(join(dir, 'audit.jsonl'), entry(1) + entry(2) + 'x'.repeat(10 * 1024 * 1024) + '\n' + entry(3))
  const audit = new AuditLog({ dir })
  const result = await audit.query({ limit: 10 })
  t.same(result.entries.map((e) => e.reason), ['n3', 'n2', 'n1'])
  t.equal(result.skipped, 1, 'the overlong line is counted as damage')
  t.equal(result.bytesRead, statSync(join(dir, 'audit.jsonl')).size, 'every byte read exactly once')
  const bounded = await audit.query({ limit: 10, maxScanBytes: 1024 * 1024 })
  t.equal(bounded.truncated, true, 'a read stops at maxScanBytes and says so')
  t.ok(bounded.bytesRead <= 1024 * 1024 + 64 * 1024, `bounded (${bounded.bytesRead} bytes)`)

  const { app } = await build(t, { config: { data_dir: dir } })
  const r = await call(app, '/api/v1/events?limit=10&kind=note')
  t.equal(r.status, 200)
  t.same(r.body.events.map((e: { reason: string }) => e.reason), ['n3', 'n2', 'n1'])
})

t.test('audit.jsonl that is a directory: /events says so (503 AUDIT_UNREADABLE), changes still work', async (t) => {
  const dir = scratchDir(t)
  mkdirSync(join(dir, 'audit.jsonl'))
  const lines: string[] = []
  const logger = (await import('pino')).pino({ level: 'info' }, { write: (line: string) => { lines.push(line) } })
  const { app } = await build(t, { config: { data_dir: dir }, logger })
  assertError(t, await call(app, '/api/v1/events'), 503, 'AUDIT_UNREADABLE', /audit trail cannot be read/)
  t.ok(lines.some((l) => /it is a directory/.test(l)), 'the log names the problem')
  const disable = await call(app, { method: 'POST', url: '/api/v1/revert/disable?minutes=5' })
  t.equal(disable.status, 200, 'the setting is saved (state/), so it is acknowledged')
  t.equal((await call(app, '/api/v1/status')).body.auto_revert_enabled, false)
  t.match(readFileSync(join(dir, 'state', 'test.json'), 'utf8'), /"technician"/)
})
