// The security plugin's rules, each against the real app: guest networks, the admin token,
// loopback-only admin without a token, read access, rate limits, the admin listener, and that
// the token never reaches a log line or a response.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { pino } from 'pino'
import { buildApp } from '../../src/app.ts'
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts'
import { openHypervisor } from '../../src/libvirt/index.ts'
import { networkList } from '../../src/net/addresses.ts'
import { bearerToken, tokenMatches } from '../../src/plugins/security.ts'
import { build, TOKEN } from '../helpers/app.ts'

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('network lists: CIDRs, single addresses, IPv4-mapped IPv6, garbage', async (t) => {
  const has = networkList(['192.168.122.0/24', '10.0.2.0/24', '127.0.0.0/8', '::1', '2001:db8::/32', '198.51.100.7'])
  t.ok(has('192.168.122.12'))
  t.ok(has('::ffff:192.168.122.15'), 'IPv4-mapped address of a guest network')
  t.ok(has('127.1.2.3'))
  t.ok(has('::1'))
  t.ok(has('2001:db8:1::5'))
  t.ok(has('198.51.100.7'))
  t.notOk(has('198.51.100.8'))
  t.notOk(has('192.168.123.1'))
  t.notOk(has('::2'))
  t.notOk(has(''))
  t.notOk(has('not-an-address'))
})

t.test('bearer parsing and constant-time comparison', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc')
  t.equal(bearerToken('bearer   abc '), 'abc')
  t.equal(bearerToken('Basic abc'), null)
  t.equal(bearerToken('Bearer a b'), null)
  t.equal(bearerToken(undefined), null)
  t.ok(tokenMatches(TOKEN, TOKEN))
  t.notOk(tokenMatches(TOKEN.slice(0, -1), TOKEN), 'a prefix does not match')
  t.notOk(tokenMatches('', TOKEN))
})

t.test('guest endpoints answer the guest networks, the host and technicians only', async (t) => {
  const { app } = await build(t, { probes: true, config: { security: { admin_token: TOKEN } } })
  for (const remoteAddress of ['192.168.122.15', '::ffff:192.168.122.15', '192.168.122.12']) {
    const res = await app.inject({ url: '/probe/guest', remoteAddress })
    t.equal(res.statusCode, 200, `${remoteAddress} is a guest network`)
  }
  for (const remoteAddress of ['127.0.0.1', '::1']) {
    const res = await app.inject({ url: '/probe/guest', remoteAddress })
    t.equal(res.statusCode, 401, `${remoteAddress}: not a guest network by default, so a technician's request: the token is configured and needed`)
    t.match(res.json().error.message, /not in security\.guest_networks.*Authorization: Bearer/)
  }
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '10.0.2.15' })).statusCode, 403, 'QEMU user networking\'s subnet is not a default guest network')
  const refused = await app.inject({ url: '/probe/guest', remoteAddress: '203.0.113.5' })
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().error.code, 'FORBIDDEN')
  t.match(refused.json().error.message, /guest_networks.*203\.0\.113\.5/)

  const withToken = await app.inject({ url: '/probe/guest', remoteAddress: '203.0.113.5', headers: bearer(TOKEN) })
  t.equal(withToken.statusCode, 200, 'a technician with the admin token may call guest endpoints too')
  const wrongToken = await app.inject({ url: '/probe/guest', remoteAddress: '203.0.113.5', headers: bearer('x'.repeat(20)) })
  t.equal(wrongToken.statusCode, 403)
})

t.test('configured guest_networks replace the defaults', async (t) => {
  const { app } = await build(t, { probes: true, config: { security: { guest_networks: ['172.16.5.0/24'] } } })
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '172.16.5.9' })).statusCode, 200)
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '192.168.122.15' })).statusCode, 403)
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '127.0.0.1' })).statusCode, 200, 'loopback not listed: the host, a technician (no token configured)')
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '10.9.9.9' })).statusCode, 403)
})

t.test('who asks on a guest endpoint: guest networks are guests; the host, the token and the admin listener are technicians', async (t) => {
  const probe = (app: FastifyInstance) => {
    app.route({ method: ['GET', 'POST'], url: '/probe/who', config: { access: 'guest' }, handler: async (request) => ({ requester: request.requester }) })
    app.route({ method: ['GET', 'POST'], url: '/probe/beat', config: { access: 'guest', liveness: true }, handler: async (request) => ({ requester: request.requester }) })
  }
  const who = async (app: FastifyInstance, options: InjectOptions) => {
    const res = await app.inject(options)
    return res.statusCode === 200 ? res.json().requester : res.statusCode
  }

  const { app: open } = await build(t, { beforeReady: probe })
  t.equal(await who(open, { url: '/probe/who', remoteAddress: '192.168.122.9' }), 'guest')
  t.equal(await who(open, { url: '/probe/who', remoteAddress: '127.0.0.1' }), 'technician', 'loopback (not a guest network, no token configured) is the host')
  t.equal(await who(open, { url: '/probe/who', remoteAddress: '::1' }), 'technician')
  t.equal(await who(open, { url: '/probe/who', remoteAddress: '203.0.113.5' }), 403)
  t.equal(await who(open, { url: '/probe/who', remoteAddress: '203.0.113.5', headers: bearer(TOKEN) }), 403, 'no token configured: a presented one proves nothing')

  const { app: locked } = await build(t, { beforeReady: probe, config: { security: { admin_token: TOKEN } } })
  t.equal(await who(locked, { url: '/probe/who', remoteAddress: '127.0.0.1' }), 401, 'a token is configured: the host\'s action needs it')
  t.equal(await who(locked, { url: '/probe/beat', remoteAddress: '127.0.0.1' }), 'technician', 'a heartbeat from the host is taken without it (quick start)')
  t.equal(await who(locked, { url: '/probe/who', remoteAddress: '127.0.0.1', headers: bearer(TOKEN) }), 'technician')
  t.equal(await who(locked, { url: '/probe/who', remoteAddress: '198.51.100.4', headers: bearer(TOKEN) }), 'technician', 'the token, from anywhere')
  t.equal(await who(locked, { url: '/probe/who', remoteAddress: '192.168.122.9', headers: bearer(TOKEN) }), 'technician', 'the token wins over the guest network')
  t.equal(await who(locked, { url: '/probe/who', remoteAddress: '192.168.122.9', headers: bearer('not-the-token-000000') }), 'guest', 'a wrong token from a guest network: still the guest, never refused')

  const { app: userNet } = await build(t, { beforeReady: probe, config: { security: { guest_networks: ['127.0.0.0/8', '::1'] } } })
  t.equal(await who(userNet, { url: '/probe/who', remoteAddress: '127.0.0.1' }), 'guest', 'QEMU user networking: loopback listed, so a guest')
  t.equal(await who(userNet, { url: '/probe/who', remoteAddress: '192.168.122.9' }), 403, 'the configured list replaces the default')
})

t.test('without a token, admin endpoints answer loopback only', async (t) => {
  const { app } = await build(t, { probes: true })
  t.equal((await app.inject({ url: '/probe/admin', remoteAddress: '127.0.0.1' })).statusCode, 200)
  t.equal((await app.inject({ url: '/probe/admin', remoteAddress: '::1' })).statusCode, 200)
  t.equal((await app.inject({ url: '/probe/admin', remoteAddress: '::ffff:127.0.0.1' })).statusCode, 200)
  for (const remoteAddress of ['192.168.122.15', '192.168.1.20']) {
    const res = await app.inject({ method: 'POST', url: '/probe/admin', remoteAddress })
    t.equal(res.statusCode, 403, `${remoteAddress} refused`)
    t.equal(res.json().error.code, 'FORBIDDEN')
    t.match(res.json().error.message, /configured: set security\.admin_token/)
  }
  const unmarked = await app.inject({ url: '/probe/none', remoteAddress: '192.168.122.15' })
  t.equal(unmarked.statusCode, 403, 'a route without access is admin')
  t.equal((await app.inject({ url: '/probe/read', remoteAddress: '192.168.1.20' })).statusCode, 200, 'read is open')
  t.equal((await app.inject({ url: '/no/such/route', remoteAddress: '192.168.1.20' })).statusCode, 404, 'unknown routes stay 404')
})

t.test('with a token, admin endpoints need it, from everywhere', async (t) => {
  const { app } = await build(t, { probes: true, config: { security: { admin_token: TOKEN } } })
  const missing = await app.inject({ method: 'POST', url: '/probe/admin' })
  t.equal(missing.statusCode, 401, 'loopback needs the token too once one is set')
  t.equal(missing.json().error.code, 'UNAUTHORIZED')
  t.match(missing.json().error.message, /Authorization: Bearer/)
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="kiosk-vm-watchdog"')

  const wrong = await app.inject({ method: 'POST', url: '/probe/admin', headers: bearer(TOKEN + 'x') })
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().error.message, 'The admin token is not valid')
  const basic = await app.inject({ method: 'POST', url: '/probe/admin', headers: { authorization: `Basic ${TOKEN}` } })
  t.equal(basic.statusCode, 401)

  for (const remoteAddress of ['127.0.0.1', '192.168.1.20', '2001:db8::7']) {
    const ok = await app.inject({ method: 'POST', url: '/probe/admin', remoteAddress, headers: bearer(TOKEN) })
    t.equal(ok.statusCode, 200, `${remoteAddress} with the token`)
    t.same(ok.json(), { ok: 'admin' })
  }
  t.equal((await app.inject({ url: '/probe/none', headers: { authorization: `bearer ${TOKEN}` } })).statusCode, 200)
  t.equal((await app.inject({ url: '/probe/read', remoteAddress: '192.168.1.20' })).statusCode, 200, 'read needs no token by default')
})

t.test('read_requires_token makes read endpoints admin-like', async (t) => {
  const { app } = await build(t, { probes: true, config: { security: { admin_token: TOKEN, read_requires_token: true } } })
  t.equal((await app.inject({ url: '/probe/read' })).statusCode, 401)
  t.equal((await app.inject({ url: '/probe/read', remoteAddress: '192.168.1.20', headers: bearer(TOKEN) })).statusCode, 200)
  const { app: noToken } = await build(t, { probes: true, config: { security: { read_requires_token: true } } })
  t.equal((await noToken.inject({ url: '/probe/read' })).statusCode, 200, 'loopback, no token configured')
  t.equal((await noToken.inject({ url: '/probe/read', remoteAddress: '192.168.1.20' })).statusCode, 403)
})

t.test('a route with an unknown access value stops the app from starting', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'kvw-test-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const app = await buildApp({ config: parseConfig({ data_dir: dataDir }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
  t.teardown(() => app.close())
  t.throws(() => app.get('/typo', { config: { access: 'gust' as 'guest' } }, async () => 'x'), /config\.access must be one of guest, admin, read \(got gust\)/)
})

t.test('rate limits: per address and access class, 429 with the registry body', async (t) => {
  const { app } = await build(t, {
    probes: true,
    config: { security: { admin_token: TOKEN, rate_limit_guest: 5, rate_limit_admin: 2, rate_limit_read: 3 } }
  })
  const codes = async (n: number, opts: InjectOptions) => {
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push((await app.inject(opts)).statusCode)
    return out
  }
  t.same(await codes(6, { url: '/probe/guest', remoteAddress: '192.168.122.15' }), [200, 200, 200, 200, 200, 429])
  const limited = await app.inject({ url: '/probe/guest', remoteAddress: '192.168.122.15' })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'RATE_LIMITED')
  t.match(limited.json().error.message, /at most 5 a minute for guest endpoints; retry in/)
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is set')
  t.equal((await app.inject({ url: '/probe/guest', remoteAddress: '192.168.122.16' })).statusCode, 200, 'another guest has its own budget')
  t.same(await codes(3, { url: '/probe/admin', remoteAddress: '192.168.122.15', headers: bearer(TOKEN) }), [200, 200, 429], 'admin is a separate, tighter budget')
  t.same(await codes(3, { url: '/probe/admin', remoteAddress: '192.168.1.9', headers: bearer('wrong-token-guess-0000') }), [401, 401, 429], 'token guessing is rate limited')
  t.same(await codes(4, { url: '/probe/read', remoteAddress: '192.168.122.15' }), [200, 200, 200, 429])
})

t.test('the token never reaches a log line or a response', async (t) => {
  const lines: string[] = []
  const sink = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const logger = pino({ level: 'trace' }, sink)
  const wrongGuess = 'guessed-token-that-is-wrong-1234'
  const { app } = await build(t, { probes: true, logger, config: { security: { admin_token: TOKEN, rate_limit_admin: 3 } } })
  const bodies: string[] = []
  for (const headers of [bearer(TOKEN), bearer(wrongGuess), bearer(wrongGuess), bearer(TOKEN), bearer(wrongGuess)]) {
    bodies.push((await app.inject({ method: 'POST', url: '/probe/admin', headers })).body)
  }
  bodies.push((await app.inject({ url: '/probe/guest', remoteAddress: '203.0.113.9', headers: bearer(wrongGuess) })).body)
  await app.close()
  const log = lines.join('')
  t.match(log, /request refused/, 'refusals were logged')
  t.match(log, /"admin":"bearer token"/, 'the access mode was logged')
  t.notMatch(log, TOKEN, 'the configured token is not in the log')
  t.notMatch(log, wrongGuess, 'a presented token is not in the log')
  t.notMatch(log, /authorization/i, 'no Authorization header in the log')
  for (const body of bodies) {
    t.notMatch(body, TOKEN)
    t.notMatch(body, wrongGuess)
  }
  t.match(bodies, [/"ok":"admin"/, /UNAUTHORIZED/, /UNAUTHORIZED/, /RATE_LIMITED/, /RATE_LIMITED/, /FORBIDDEN/])
})

t.test('admin_token_file: read by loadConfig, relative to the config file; the token is never in an error', async (t) => {
  const dir = t.testdir({
    'config.yaml': 'security:\n  admin_token_file: secrets/token\n',
    secrets: { token: `${TOKEN}\n` },
    'bad.yaml': 'security:\n  admin_token_file: short-token\n',
    'short-token': 'tiny secret',
    'missing.yaml': 'security:\n  admin_token_file: nowhere\n',
    'both.yaml': `security:\n  admin_token: ${TOKEN}\n  admin_token_file: secrets/token\n`
  })
  t.equal(loadConfig(join(dir, 'config.yaml'), {}).config.security.admin_token, TOKEN)
  const short = t.throws(() => loadConfig(join(dir, 'bad.yaml'), {})) as ConfigError
  t.type(short, ConfigError)
  t.match(short.message, /security\.admin_token_file: the token in .*short-token: at least 16 characters/)
  t.notMatch(short.message, 'tiny secret')
  t.throws(() => loadConfig(join(dir, 'missing.yaml'), {}), /security\.admin_token_file: cannot read .*nowhere: ENOENT/)
  t.throws(() => loadConfig(join(dir, 'both.yaml'), {}), /security\.admin_token_file: set admin_token or admin_token_file, not both/)

  const unresolved = parseConfig({ data_dir: dir, security: { admin_token_file: 'secrets/token' } }, {})
  const hypervisor = openHypervisor('test:///default', { reconnect: false })
  t.teardown(() => hypervisor.close()) // buildApp failed: no app closes it
  const app = await buildApp({ config: unresolved, hypervisor }).catch((e: unknown) => e)
  t.match(app, { message: /admin_token_file is set but the token was not read/ }, 'the app refuses a token file nobody read')
})

t.test('bad security config names the key', async (t) => {
  t.throws(() => parseConfig({ security: { guest_networks: ['10.0.2.0/33'] } }, {}), /security\.guest_networks\[0\]: not an IP address or CIDR network/)
  t.throws(() => parseConfig({ security: { admin_token: 'short' } }, {}), /security\.admin_token: at least 16 characters/)
  t.throws(() => parseConfig({ security: { rate_limit_guest: 0 } }, {}), /security\.rate_limit_guest/)
  t.throws(() => parseConfig({ security: { admin_tokn: 'x' } }, {}), /security\.admin_tokn: unknown key/)
})

t.test('admin listener: admin endpoints there only; guest endpoints there are a technician\'s', async (t) => {
  const { app } = await build(t, { probes: true, config: { api_host: '127.0.0.1', security: { admin_port: 0 } } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const main = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const admin = await app.listenAdmin({ host: '127.0.0.1', port: 0 })
  const adminUrl = `http://127.0.0.1:${admin.port}`
  await t.rejects(app.listenAdmin({ port: 0 }), /already listening/)

  const status = async (url: string) => (await fetch(url)).status
  t.equal(await status(`${main}/probe/admin`), 404, 'admin endpoint hidden on the main listener')
  t.equal((await app.inject({ url: '/probe/admin' })).statusCode, 404, 'inject goes to the main listener')
  t.equal(await status(`${main}/probe/guest`), 200)
  t.equal(await status(`${main}/probe/read`), 200)
  t.equal(await status(`${adminUrl}/probe/admin`), 200)
  t.equal(await status(`${adminUrl}/probe/read`), 200)
  t.equal(await status(`${adminUrl}/probe/guest`), 200, 'a guest endpoint on the admin listener: a technician\'s (EVC\'s UI on the admin port reverts through GET /vm/restart)')
  const restart = await fetch(`${adminUrl}/api/v1/vm/restart`)
  t.equal(restart.status, 202)
  t.match(await restart.json(), { details: { requester: 'technician', outcome: 'started' } })
  const body = await (await fetch(`${main}/probe/admin`)).json() as { error: { code: string } }
  t.equal(body.error.code, 'NOT_FOUND')
  await app.close()
  await t.rejects(fetch(`${adminUrl}/probe/admin`), 'the admin listener closes with the app')
})

t.test('listenAdmin without admin_port configured is a clear error', async (t) => {
  const { app } = await build(t, { probes: true })
  await t.rejects(app.listenAdmin({ port: 0 }), /needs security\.admin_port/)
})
