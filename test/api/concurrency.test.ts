// Many guest revert requests at once. The rule (src/heartbeat/machine.ts): the first starts the
// revert; while it runs, and during the grace after it until the guest's first heartbeat, further
// guest requests join it (202, outcome "coalesced"); once the guest is back, a guest may not cause
// another revert within guest_revert_min_interval (409 CONFLICT).
import t from 'tap'
import type { InjectOptions } from 'fastify'
import { build, call, events, until } from './helpers.ts'

const N = 20

function guestRequest (i: number): InjectOptions {
  // Every way a guest asks: both paths, GET and POST, query and body, default and per-VM prefix.
  const path = i % 2 === 0 ? 'revert/request' : 'vm/restart'
  const prefix = i % 3 === 0 ? '/api/v1/vms/test/' : '/api/v1/'
  return i % 4 < 2
    ? { method: 'GET', url: `${prefix}${path}?reason=burst_${i}`, remoteAddress: '192.168.122.15' }
    : { method: 'POST', url: `${prefix}${path}`, payload: { reason: `burst_${i}` }, remoteAddress: '192.168.122.15' }
}

t.test(`${N} simultaneous guest revert requests: exactly one revert, the others coalesced`, async (t) => {
  const { app, lifecycle, settled, run } = await build(t)
  const answers = await Promise.all(Array.from({ length: N }, (_, i) => app.inject(guestRequest(i))))
  t.same(answers.map((r) => r.statusCode), Array(N).fill(202), 'all accepted')
  const outcomes = answers.map((r) => r.json().details.outcome)
  t.equal(outcomes.filter((o) => o === 'started').length, 1, 'one started')
  t.equal(outcomes.filter((o) => o === 'coalesced').length, N - 1, 'the rest coalesced')
  const startedBy = answers.find((r) => r.json().details.outcome === 'started')!.json().details.reason

  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  // Any stray second revert would be queued by now: wait for the queue to be empty before counting.
  await settled()
  const started = await events(app, 'revert_started')
  t.equal(started.length, 1, 'one revert_started in the audit trail')
  t.equal(started[0]!.reason, startedBy, 'the revert carries the reason of the request that started it')
  // The first coalesced request is written in full, the rest counted in one summary (issue 13).
  t.same((await events(app, 'revert_request')).map((e) => e.outcome).sort(), ['coalesced', 'started'], 'the started request and the first coalesced one, in full')
  const testEvents = lifecycle.filter((e) => e.domain === 'test').map((e) => `${e.type}/${e.detailName}`)
  t.same(testEvents, ['stopped/from_snapshot', 'started/from_snapshot'], 'libvirt: exactly one stop/start pair')
  const status = (await call(app, '/api/v1/status')).body.watchdog
  t.equal(status.counters.reverts, 1)
  t.same(status.counters.requests, { started: 1, coalesced: N - 1 })
  t.equal(status.state, 'grace')

  // The guest is back: now the minimum interval refuses every one of another burst.
  t.equal((await call(app, { url: '/api/v1/heartbeat', remoteAddress: '192.168.122.15' })).body.details.state, 'healthy')
  const second = await Promise.all(Array.from({ length: N }, (_, i) => app.inject(guestRequest(i))))
  t.same(second.map((r) => r.statusCode), Array(N).fill(409), 'all refused')
  t.ok(second.every((r) => r.json().error.code === 'CONFLICT' && /at most one every 60 s/.test(r.json().error.message)))
  t.equal((await events(app, 'revert_started')).length, 1, 'still one revert')
  t.equal(lifecycle.filter((e) => e.domain === 'test').length, 2, 'libvirt saw nothing more')
  t.equal((await events(app, 'revert_request')).length, 3, 'the first refusal in full too')
  await run(60_000) // the summary window ends
  const summaries = await events(app, 'revert_requests_summary')
  t.match(summaries.find((e) => e.outcome === 'coalesced'), { count: N - 2 }, 'every other coalesced request counted in one summary')
  t.match(summaries.find((e) => e.outcome === 'refused'), { count: N - 1 }, 'every other refused request counted in one summary')
})
