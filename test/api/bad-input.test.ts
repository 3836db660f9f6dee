// Bad input of every kind the API can get: each answer is `{ error: { code, message }, detail }`
// with a stable code and a message naming what is wrong; nothing reaches the watchdog or libvirt.
// Except on the guest routes: a heartbeat or a revert request is never lost to its form; what
// was not used is named in the answer's details.ignored.
import t from 'tap'
import { build, assertError, call, events, GUEST } from './helpers.ts'

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

t.test('any reason is accepted: control characters removed, cut at 200 characters, named in details.ignored', async (t) => {
  // No minimum interval: every request is answered 202 (started, or joined to the revert under way).
  const { app, settled } = await build(t, { config: { security: { guest_revert_min_interval: 0 } } })
  const cases: Array<[string, string, RegExp[]]> = [
    ['Übung', 'Übung', []],
    ['😀 idle', '😀 idle', []],
    ['<script>', '<script>', []],
    ['a;rm -rf /', 'a;rm -rf /', []],
    ['line\nbreak\ttab', 'line break tab', []],
    ['a\u0000b\u001b[31m\u202e', 'ab[31m', [/^reason: control characters removed$/]],
    ['x'.repeat(250), 'x'.repeat(200), [/^reason: cut to 200 characters \(was 250\)$/]],
    ['\u0000 \n', 'guest_request', [/^reason: control characters removed$/]]
  ]
  for (const [reason, kept, ignored] of cases) {
    const r = await call(app, { url: `/api/v1/revert/request?reason=${encodeURIComponent(reason)}`, ...GUEST })
    t.equal(r.status, 202, `${JSON.stringify(reason).slice(0, 40)}: accepted (${r.res.body.slice(0, 200)})`)
    t.equal(r.body.details.reason, kept)
    t.equal(r.body.details.requester, 'guest')
    t.match(r.body.details.ignored ?? [], ignored)
    t.equal((r.body.details.ignored ?? []).length, ignored.length)
  }
  await settled()
  const requests = await events(app, 'revert_request')
  // Coalesced requests after the first of a minute are summarised in the audit trail (store/audit-summary.ts).
  t.same(requests.map((e) => e.reason).reverse(), ['Übung', '😀 idle'], 'the non-ASCII reasons reached the watchdog and its audit trail')
  t.match(requests.at(-1), { source: 'guest', outcome: 'started' })

  // The same in a JSON body, on EVC's path, and in a technician's revert; a number is text.
  const post = await call(app, { method: 'POST', url: '/api/v1/vm/restart', payload: { reason: 'Übung\u0007' }, ...GUEST })
  t.equal(post.status, 202)
  t.same([post.body.details.reason, post.body.details.ignored], ['Übung', ['reason: control characters removed']])
  const number = await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: { reason: 42 }, ...GUEST })
  t.same([number.status, number.body.details.reason], [202, '42'])
  const technician = await call(app, { method: 'POST', url: `/api/v1/revert?reason=${encodeURIComponent('Wartung ä\n' + 'y'.repeat(300))}` })
  t.equal(technician.status, 202)
  t.equal(technician.body.details.reason, 'Wartung ä ' + 'y'.repeat(190))
  t.match(technician.body.details.ignored, [/reason: cut to 200 characters/])
  await settled()
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

t.test('heartbeat fields of the wrong type: ignored and named in details.ignored, the heartbeat counted', async (t) => {
  const { app } = await build(t)
  const cases: Array<[string | { method: 'POST', url: string, payload: unknown, headers?: Record<string, string> }, RegExp[], number | null]> = [
    ['/api/v1/heartbeat?seq=abc', [/^seq: not a whole number ≥ 0 \("abc"\)$/], null],
    ['/api/v1/heartbeat?seq=-1', [/^seq: not a whole number/], null],
    ['/api/v1/heartbeat?seq=1.5', [/^seq: not a whole number/], null],
    ['/api/v1/heartbeat?seq=1e30', [/^seq: not a whole number/], null],
    ['/api/v1/heartbeat?seq=99999999999999999999', [/^seq: not a whole number/], null],
    ['/api/v1/heartbeat?seq=1&seq=2', [/^seq: given 2 times, the last one used$/], 2],
    [`/api/v1/heartbeat?status=${'x'.repeat(201)}&seq=4`, [/^status: cut to 200 characters \(was 201\)$/], 4],
    ['/api/v1/heartbeat?foo=bar&seq=3', [/^foo: not a field of this endpoint$/], 3],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: { seq: 'abc' } }, [/^seq: not a whole number/], null],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: { seq: -1, status: 12 } }, [/^seq: not a whole number/], null],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: [1, 2] }, [/^body: JSON but not an object/], null],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: '5', headers: { 'content-type': 'application/json' } }, [/^body: JSON but not an object/], null],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: 'null', headers: { 'content-type': 'application/json' } }, [/^body: JSON but not an object/], null],
    [{ method: 'POST', url: '/api/v1/heartbeat', payload: { seq: '12' } }, [], 12] // AutoIt sends strings
  ]
  for (const [request, ignored, seq] of cases) {
    const r = await call(app, request as never)
    const what = typeof request === 'string' ? request.slice(0, 60) : JSON.stringify(request).slice(0, 80)
    t.equal(r.status, 200, `${what}: counted (${r.res.body.slice(0, 200)})`)
    t.equal(r.body.details.seq, seq, `${what}: seq`)
    t.match(r.body.details.ignored ?? [], ignored, `${what}: ignored`)
    t.equal((r.body.details.ignored ?? []).length, ignored.length, `${what}: nothing else ignored`)
  }
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.heartbeats_total, cases.length, 'every one counted as a heartbeat')
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.last_seq, 12)
  assertError(t, await call(app, '/api/v1/heartbeat?vm=nope'), 404, 'UNKNOWN_VM', /No VM named "nope"/)
})

t.test('a vm field that names no VM is refused 404, never credited to the default VM', async (t) => {
  const { app } = await build(t, { config: { security: { guest_revert_min_interval: 0 } } })
  const beats = () => app.vms.get('test')!.watchdog.view().heartbeatsTotal
  const json = { 'content-type': 'application/json' }
  const unusable: Array<[string, { method: 'GET' | 'POST', url: string, payload?: string, headers?: Record<string, string> }, RegExp]> = [
    ['a number naming no VM', { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":7}', headers: json }, /No VM named "7"/],
    ['65 characters (query)', { method: 'GET', url: `/api/v1/heartbeat?vm=${'x'.repeat(65)}` }, /vm field \("x{39}…\)/],
    ['65 characters (body)', { method: 'POST', url: '/api/v1/heartbeat', payload: JSON.stringify({ vm: 'x'.repeat(65) }), headers: json }, /vm field/],
    ['an object', { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":{}}', headers: json }, /vm field \(an object\)/],
    ['a named object', { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":{"name":"test"}}', headers: json }, /vm field \(an object\)/],
    ['true', { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":true}', headers: json }, /vm field \(true\)/],
    ['a list of objects', { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":[{}]}', headers: json }, /vm field \(an object\)/],
    ['body null does not unset ?vm=nosuch', { method: 'POST', url: '/api/v1/heartbeat?vm=nosuch', payload: '{"vm":null}', headers: json }, /No VM named "nosuch"/],
    ['body "" does not unset ?vm=nosuch (form)', { method: 'POST', url: '/api/v1/heartbeat?vm=nosuch', payload: 'vm=&seq=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, /No VM named "nosuch"/],
    ['revert/request', { method: 'POST', url: '/api/v1/revert/request', payload: '{"vm":{}}', headers: json }, /vm field \(an object\)/],
    ['vm/restart', { method: 'GET', url: `/api/v1/vm/restart?vm=${'y'.repeat(100)}` }, /vm field/],
    ['vm/restart, body null over ?vm=nosuch', { method: 'POST', url: '/api/v1/vm/restart?vm=nosuch', payload: '{"vm":null,"reason":"idle"}', headers: json }, /No VM named "nosuch"/]
  ]
  for (const [what, request, message] of unusable) {
    assertError(t, await call(app, { ...request, ...GUEST }), 404, 'UNKNOWN_VM', message)
    t.equal(beats(), 0, `${what}: not credited to the default VM`)
  }
  t.same(await events(app, 'revert_request'), [], 'no revert asked of the default VM')
  const refused = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":{}}', headers: json, ...GUEST })
  t.match(refused.body.error.details, { field: 'vm' }, 'the error names the field')

  // A number is a name ("7" is not watched here, "test" given as text works as ever);
  // a null or empty body value leaves the query's; on a per-VM path the path decides.
  const ok = await call(app, { method: 'POST', url: '/api/v1/heartbeat?vm=test&seq=3', payload: '{"vm":null,"seq":null}', headers: json, ...GUEST })
  t.equal(ok.status, 200, ok.res.body)
  t.same([ok.body.details.vm, ok.body.details.seq, ok.body.details.ignored], ['test', 3, undefined])
  const none = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":null}', headers: json, ...GUEST })
  t.equal(none.status, 200, 'vm null with nothing else: the default VM, as no vm at all')
  const path = await call(app, { method: 'POST', url: '/api/v1/vms/test/heartbeat', payload: '{"vm":{}}', headers: json, ...GUEST })
  t.equal(path.status, 200, 'the path names the VM: the unusable field is only listed')
  t.match(path.body.details, { vm: 'test', ignored: [/^vm: not a VM name \(an object\)$/] })
  t.equal(beats(), 3)
})

t.test('an unusable vm field spends the unknown VMs\' rate budget, not the default VM\'s', async (t) => {
  const { app } = await build(t, { config: { security: { rate_limit_guest: 5 } } })
  const json = { 'content-type': 'application/json' }
  const beats: number[] = []
  // A heartbeat is answered by its handler even over the limit (404 here, as for an unknown name).
  for (let i = 0; i < 7; i++) beats.push((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: '{"vm":{}}', headers: json, ...GUEST })).status)
  t.same(beats, [404, 404, 404, 404, 404, 404, 404])
  t.equal((await call(app, { url: '/api/v1/heartbeat?seq=1', ...GUEST })).status, 200, 'the guest\'s own heartbeats still have their budget')
  const requests: number[] = []
  for (let i = 0; i < 7; i++) requests.push((await call(app, { method: 'POST', url: '/api/v1/revert/request', payload: '{"vm":[1,{}]}', headers: json, ...GUEST })).status)
  t.same(requests, [404, 404, 404, 404, 404, 429, 429], 'revert requests: refused, then limited')
  t.equal((await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST })).status, 202, 'the guest\'s own revert request still has its budget')
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

t.test('guest bodies of any kind: a heartbeat is never lost to its body (what was not read is named)', async (t) => {
  const { app } = await build(t)
  const json = { 'content-type': 'application/json' }
  const post = async (payload: string | undefined, headers: Record<string, string>, url = '/api/v1/heartbeat') =>
    call(app, { method: 'POST', url, headers, ...(payload === undefined ? {} : { payload }) })
  const cases: Array<[string | undefined, Record<string, string>, RegExp[], number | null]> = [
    ['', json, [], null], // curl -X POST -H 'Content-Type: application/json'
    ['  \n', json, [], null],
    [undefined, json, [], null],
    ['{bad', json, [/^body: not valid JSON \(content type application\/json\)$/], null],
    ['{"seq":', json, [/^body: not valid JSON/], null],
    ["{'seq':1}", json, [/^body: not valid JSON/], null],
    ['\u0000', json, [/^body: not valid JSON/], null],
    ['seq=7&status=ok', { 'content-type': 'application/x-www-form-urlencoded' }, [], 7],
    ['seq=8', { 'content-type': 'text/plain' }, [], 8],
    ['seq=9', {}, [], 9],
    ['{"seq":10}', { 'content-type': 'text/plain;charset=utf-8' }, [], 10],
    ['<hb seq="1"/>', { 'content-type': 'application/xml' }, [/^body: not read \(content type application\/xml; send JSON or form fields\)$/], null],
    ['\u0089PNG garbage', { 'content-type': 'image/png' }, [/^body: not read/], null],
    ['--x\r\n', { 'content-type': 'multipart/form-data; boundary=x' }, [/^body: not read/], null],
    ['seq=11', { 'content-type': 'this is ;;; not a media type' }, [], 11],
    ['{"__proto__":{"vm":"nope"},"seq":12}', json, [/^__proto__: not a field of this endpoint$/], 12],
    [JSON.stringify({ seq: 13, status: 'x'.repeat(70 * 1024) }), json, [/^body: only the first 65536 bytes read \(\d+ more dropped\)$/, /^body: not valid JSON/], null]
  ]
  for (const [payload, headers, ignored, seq] of cases) {
    const r = await post(payload, headers)
    const what = `${JSON.stringify(headers['content-type'] ?? null)} ${JSON.stringify(payload)?.slice(0, 40)}`
    t.equal(r.status, 200, `${what}: counted (${r.res.body.slice(0, 200)})`)
    t.equal(r.body?.details?.seq, seq, `${what}: seq`)
    t.match(r.body?.details?.ignored ?? [], ignored, `${what}: ignored`)
    t.equal((r.body?.details?.ignored ?? []).length, ignored.length, `${what}: nothing else ignored`)
  }
  t.equal((await call(app, '/api/v1/heartbeat/status')).body.heartbeats_total, cases.length, 'every heartbeat counted')
  t.equal(app.vms.get('test')!.watchdog.view().lastSource, '127.0.0.1')

  // A guest's revert request with a body nobody could parse is still a revert request.
  const garbage = await post('{garbage', json, '/api/v1/revert/request')
  t.equal(garbage.status, 202)
  t.match(garbage.body.details, { reason: 'technician', ignored: [/^body: not valid JSON/] })
})

t.test('technician bodies: an empty JSON body is no body; malformed JSON 400, oversize 413, other types 415', async (t) => {
  const { app } = await build(t)
  const json = { 'content-type': 'application/json' }
  for (const url of ['/api/v1/revert/enable', '/api/v1/revert/disable', '/api/v1/vm/restart', '/api/v1/revert/request', '/api/v1/heartbeat']) {
    const r = await call(app, { method: 'POST', url, headers: json, payload: '' })
    t.ok(r.status >= 200 && r.status < 300, `${url} with an empty JSON body: ${r.status} (${r.res.body.slice(0, 200)})`)
  }
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/enable', headers: json })).status, 200, 'no body at all')
  for (const payload of ['{bad', '{"vm":', "{'vm':1}"]) {
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/enable', payload, headers: json }), 400, 'BAD_REQUEST', /Body is not valid JSON/)
  }
  // Prototype pollution attempts are refused by the JSON parser, not merged into the fields.
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert', payload: '{"constructor":{"prototype":{"reason":"x"}}}', headers: json }), 400, 'BAD_REQUEST')
  const big = JSON.stringify({ reason: 'x'.repeat(64 * 1024) })
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert', payload: big, headers: json }), 413, 'PAYLOAD_TOO_LARGE', /too large/)
  for (const type of ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'image/png']) {
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/enable', payload: 'vm=test', headers: { 'content-type': type } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  }
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
  t.same(internal.body, { error: { code: 'INTERNAL', message: 'Internal error' }, detail: 'Internal error' })
  t.notMatch(internal.res.body, /secret|hunter2|\/work\/|stack|at Object/)

  const libvirt = await call(app, '/probe/libvirt')
  assertError(t, libvirt, 502, 'LIBVIRT_ERROR')
  t.same(libvirt.body, { error: { code: 'LIBVIRT_ERROR', message: 'libvirt refused the operation' }, detail: 'libvirt refused the operation' }, 'no details in a 5xx: they go to the log')

  const rejected = await call(app, '/probe/rejected')
  t.equal(rejected.status, 500, 'a 5xx status on an unknown error is still INTERNAL')
  t.same(rejected.body, { error: { code: 'INTERNAL', message: 'Internal error' }, detail: 'Internal error' })
})
