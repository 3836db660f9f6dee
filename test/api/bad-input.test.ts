// Bad input of every kind the API can get: each answer is `{ error: { code, message } }` with a
// stable code and a message naming what is wrong; nothing reaches the watchdog or libvirt.
import t from 'tap'
import { build, assertError, call, events } from './helpers.ts'

t.test('bad snapshot names: 400 naming the field, nothing created or deleted', async (t) => {
  const { app } = await build(t)
  const before = (await call(app, '/api/v1/snapshots')).body.snapshots
  for (const name of ['bad~name', '', '-lead', '.hidden', 'a b', 'ä', 'x'.repeat(101), '../../etc', 'a/b', 'a%00b', '<b>']) {
    const q = encodeURIComponent(name)
    assertError(t, await call(app, `/api/v1/snapshot/create?snapshot_name=${q}`), 400, 'BAD_REQUEST', /^querystring is not valid: snapshot_name: letters, digits and _ \. \+ - \(max 100\)/)
    assertError(t, await call(app, { method: 'POST', url: `/api/v1/snapshot/rollback?snapshot_name=${q}` }), 400, 'BAD_REQUEST', /snapshot_name: /)
  }
  for (const name of ['bad~name', 'ready~2026', 'ready~20261301T000000.000Z', '...', 'ä', '%3Cb%3E', '%2E%2E%2Fetc']) {
    assertError(t, await call(app, { method: 'DELETE', url: `/api/v1/snapshot/${name}` }), 400, 'BAD_REQUEST', /^params is not valid: name: a snapshot name .*or a revision name NAME~YYYYMMDDTHHMMSS\.mmmZ/)
    assertError(t, await call(app, `/api/v1/snapshot/delete/${name}`), 400, 'BAD_REQUEST', /^params is not valid: name: /)
  }
  assertError(t, await call(app, '/api/v1/snapshot/delete/ready?force=maybe'), 400, 'BAD_REQUEST', /force: expected true, false, 1 or 0/)
  t.same((await call(app, '/api/v1/snapshots')).body.snapshots, before, 'the snapshots are as they were')
  t.same(await events(app, 'snapshot_create'), [])
})

t.test('reasons with forbidden characters or too long: 400 naming reason, no revert', async (t) => {
  const { app } = await build(t)
  for (const reason of ['<script>', 'a;rm -rf /', 'line\nbreak', 'tab\there', 'ä', '😀', '"quoted"', 'x'.repeat(201), '$(id)', 'a\u0000b']) {
    const q = encodeURIComponent(reason)
    const message = reason.length > 200 ? /reason: Too big: expected string to have <=200 characters/ : /reason: letters, digits, spaces and _ \. : , \/ - only/
    assertError(t, await call(app, `/api/v1/revert/request?reason=${q}`), 400, 'BAD_REQUEST', message)
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason } }), 400, 'BAD_REQUEST', new RegExp('^body is not valid: ' + message.source))
    assertError(t, await call(app, { method: 'POST', url: `/api/v1/vm/restart?reason=${q}` }), 400, 'BAD_REQUEST', message)
    assertError(t, await call(app, { method: 'POST', url: `/api/v1/revert?reason=${q}` }), 400, 'BAD_REQUEST', message)
  }
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason: 42 } }), 400, 'BAD_REQUEST', /reason: Invalid input: expected string, received number/)
  t.same(await events(app, 'revert_request'), [], 'no request reached the watchdog')
  t.equal((await call(app, '/api/v1/status')).body.watchdog.counters.reverts, 0)
})

t.test('minutes: negative, zero, huge, not a number: 400 naming minutes', async (t) => {
  const { app } = await build(t)
  for (const [minutes, message] of [
    ['-1', /minutes: Too small: expected number to be >0/],
    ['0', /minutes: Too small/],
    ['', /minutes: Too small/], // an empty value is 0
    ['525601', /minutes: Too big: expected number to be <=525600/],
    ['1e99', /minutes: Too big/],
    ['abc', /minutes: Invalid input: expected number, received NaN/],
    ['NaN', /minutes: Invalid input: expected number, received NaN/],
    ['Infinity', /minutes: Invalid input: expected number, received Infinity/],
    ['1&minutes=2', /minutes: Invalid input: expected number, received NaN/] // repeated key: an array
  ] as const) {
    assertError(t, await call(app, `/api/v1/revert/disable?minutes=${minutes}`), 400, 'BAD_REQUEST', message)
  }
  assertError(t, await call(app, '/api/v1/revert/disable?indefinite=yes'), 400, 'BAD_REQUEST', /indefinite: expected true, false, 1 or 0/)
  t.equal((await call(app, '/api/v1/status')).body.watchdog.maintenance, null, 'no maintenance was set')
  t.equal((await call(app, '/api/v1/revert/disable?minutes=525600')).status, 200, 'a year is the limit, and allowed')
})

t.test('heartbeat fields of the wrong type: 400 naming the field', async (t) => {
  const { app } = await build(t)
  assertError(t, await call(app, '/api/v1/heartbeat?seq=abc'), 400, 'BAD_REQUEST', /^querystring is not valid: seq: Invalid input: expected number, received NaN$/)
  assertError(t, await call(app, '/api/v1/heartbeat?seq=-1'), 400, 'BAD_REQUEST', /seq: Too small/)
  assertError(t, await call(app, '/api/v1/heartbeat?seq=1.5'), 400, 'BAD_REQUEST', /seq: Invalid input: expected int/)
  assertError(t, await call(app, '/api/v1/heartbeat?seq=1e30'), 400, 'BAD_REQUEST', /seq: Too big/)
  assertError(t, await call(app, '/api/v1/heartbeat?seq=1&seq=2'), 400, 'BAD_REQUEST', /seq: /)
  assertError(t, await call(app, `/api/v1/heartbeat?status=${'x'.repeat(201)}`), 400, 'BAD_REQUEST', /status: Too big/)
  assertError(t, await call(app, `/api/v1/heartbeat?vm=${'x'.repeat(65)}`), 400, 'BAD_REQUEST', /vm: Too big/)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: { seq: 'abc' } }), 400, 'BAD_REQUEST', /^body is not valid: seq: /)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: { seq: -1, status: 12 } }), 400, 'BAD_REQUEST', /seq: Too small.*; status: Invalid input: expected string, received number/)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: { vm: { name: 'test' } } }), 400, 'BAD_REQUEST', /vm: Invalid input: expected string, received object/)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: [1, 2] }), 400, 'BAD_REQUEST', /^body is not valid: .*expected object, received array/)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: '5', headers: { 'content-type': 'application/json' } }), 400, 'BAD_REQUEST', /expected object, received number/)
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.heartbeats_total, 0, 'none of them counted as a heartbeat')

  // What is allowed: unknown fields are ignored (newer scripts may send more), a JSON null body is no body.
  t.equal((await call(app, '/api/v1/heartbeat?foo=bar&seq=3')).status, 200)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: 'null', headers: { 'content-type': 'application/json' } })).status, 200)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: { seq: '12' } })).body.details.seq, 12, 'a numeric string is a number (AutoIt sends strings)')
})

t.test('limit out of range, kind malformed: 400 naming the field', async (t) => {
  const { app } = await build(t)
  for (const [limit, message] of [
    ['0', /limit: Too small: expected number to be >=1/],
    ['-5', /limit: Too small/],
    ['1001', /limit: Too big: expected number to be <=1000/],
    ['1e9', /limit: Too big/],
    ['1.5', /limit: Invalid input: expected int/],
    ['abc', /limit: Invalid input: expected number, received NaN/]
  ] as const) {
    assertError(t, await call(app, `/api/v1/events?limit=${limit}`), 400, 'BAD_REQUEST', message)
  }
  assertError(t, await call(app, '/api/v1/events?kind=Revert-Started'), 400, 'BAD_REQUEST', /kind: /)
  t.equal((await call(app, '/api/v1/events?limit=1000')).status, 200)
  t.equal((await call(app, '/api/v1/events?limit=1')).status, 200)
})

t.test('unknown routes and wrong methods: 404 JSON', async (t) => {
  const { app } = await build(t)
  for (const url of ['/api/v1/nope', '/api/v2/status', '/nope', '/api/v1/vms/test/nope', '/api/v1/../../etc/passwd', '/api/v1/%2e%2e/%2e%2e/etc/passwd', '/ui/no-such-file.js']) {
    assertError(t, await call(app, url), 404, 'NOT_FOUND', /^No route GET \//)
  }
  for (const [method, url] of [['PUT', '/api/v1/heartbeat'], ['PATCH', '/api/v1/status'], ['DELETE', '/api/v1/status'], ['GET', '/api/v1/revert'], ['GET', '/api/v1/watchdog/reset'], ['POST', '/api/v1/snapshots'], ['OPTIONS', '/api/v1/heartbeat'], ['PUT', '/api/v1/snapshot/ready']] as const) {
    assertError(t, await call(app, { method, url }), 404, 'NOT_FOUND', new RegExp(`^No route ${method} `))
  }
  const head = await app.inject({ method: 'HEAD', url: '/api/v1/nope' })
  t.equal(head.statusCode, 404)
  t.match(head.headers['content-type'], /^application\/json/)
})

t.test('URLs the router cannot take: a broken %-escape, an over-long segment (400 JSON)', async (t) => {
  const { app } = await build(t)
  // Fastify answers these before any route or error handler, unless the app passes
  // `frameworkErrors` (src/plugins/errors.ts) to the Fastify constructor.
  assertError(t, await call(app, '/api/v1/snapshot/delete/%ZZ'), 400, 'BAD_REQUEST', /URL is not valid/)
  assertError(t, await call(app, `/api/v1/vms/${'a'.repeat(250)}/status`), 400, 'BAD_REQUEST', /longer than 200 characters/)
  // Long but within the limit: the VM is unknown.
  assertError(t, await call(app, `/api/v1/vms/${'a'.repeat(200)}/status`), 404, 'UNKNOWN_VM')
})

t.test('bodies: malformed JSON 400, oversize 413, wrong content-type 415', async (t) => {
  const { app } = await build(t)
  const json = { 'content-type': 'application/json' }
  for (const payload of ['{bad', '{"seq":', "{'seq':1}", '{"seq":1}}', '\u0000']) {
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload, headers: json }), 400, 'BAD_REQUEST', /Body is not valid JSON/)
  }
  // Prototype pollution attempts are refused by the JSON parser, not merged into the fields.
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: '{"__proto__":{"vm":"nope"}}', headers: json }), 400, 'BAD_REQUEST')
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: '{"constructor":{"prototype":{"reason":"x"}}}', headers: json }), 400, 'BAD_REQUEST')

  const big = JSON.stringify({ status: 'x'.repeat(64 * 1024) })
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: big, headers: json }), 413, 'PAYLOAD_TOO_LARGE', /too large/)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert', payload: big, headers: json }), 413, 'PAYLOAD_TOO_LARGE')
  const justUnder = JSON.stringify({ seq: 1, pad: 'x'.repeat(60 * 1024) })
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: justUnder, headers: json })).status, 200, 'under 64 KiB is fine (unknown fields ignored)')

  for (const type of ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'image/png']) {
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: 'seq=1', headers: { 'content-type': type } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  }
  // Fastify reads text/plain as a string: the body is then not the object the route expects.
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: 'seq=1', headers: { 'content-type': 'text/plain' } }), 400, 'BAD_REQUEST', /^body is not valid: .*expected object, received string/)
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.heartbeats_total, 1, 'only the good one counted')
})

t.test('5xx answers carry the registry text only, never the cause', async (t) => {
  const { app } = await build(t, {
    beforeReady (app) {
      app.get('/probe/internal', async () => { throw new Error('secret: /etc/kiosk/token=hunter2 at Object.<anonymous> (/work/main/src/x.ts:1:1)') })
      app.get('/probe/libvirt', async () => { await app.hypervisor.start('test') }) // the domain runs: libvirt refuses
      app.get('/probe/rejected', () => Promise.reject(Object.assign(new Error('db password wrong'), { statusCode: 503 })))
    }
  })
  const internal = await call(app, '/probe/internal')
  assertError(t, internal, 500, 'INTERNAL')
  t.same(internal.body, { error: { code: 'INTERNAL', message: 'Internal error' } })
  t.notMatch(internal.res.body, /secret|hunter2|\/work\/|stack|at Object/)

  const libvirt = await call(app, '/probe/libvirt')
  assertError(t, libvirt, 502, 'LIBVIRT_ERROR')
  t.same(libvirt.body, { error: { code: 'LIBVIRT_ERROR', message: 'libvirt refused the operation' } }, 'no details in a 5xx: they go to the log')

  const rejected = await call(app, '/probe/rejected')
  t.equal(rejected.status, 500, 'a 5xx status on an unknown error is still INTERNAL')
  t.same(rejected.body, { error: { code: 'INTERNAL', message: 'Internal error' } })
})
