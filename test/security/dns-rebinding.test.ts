// DNS rebinding, written as the attack: a page on attacker.example whose name now resolves to
// 127.0.0.1 is, to the browser, same-origin with itself: it sends `Host: attacker.example:8000`,
// a matching Origin and `Sec-Fetch-Site: same-origin`, and can read the answers. What only the
// network grants (loopback as admin without a token, loopback heartbeats, open reads, guest
// networks) must then be refused (403 HOST_NOT_ALLOWED); a token, a dashboard login, IP literals,
// localhost, this machine's name and security.allowed_hosts keep working. Also: a guest network's
// heartbeat sent by a browser-based exhibit (cross-site, Origin: null) is the guest's and counted;
// and a VM on QEMU user networking while loopback is not a guest network is logged at start.
import { hostname } from 'node:os'
import { Writable } from 'node:stream'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { refusedHost, serviceHostNames, userNetworkingProblem } from '../../src/plugins/security.ts'
import { assertError, build, call } from '../api/helpers.ts'
import { TOKEN } from '../helpers/app.ts'

const REBOUND = { host: 'attacker.example:8000', origin: 'http://attacker.example:8000', 'sec-fetch-site': 'same-origin' }

function heartbeats (app: FastifyInstance): number {
  return app.watchdogs.get('test')!.view().heartbeatsTotal
}

function capture (): { logger: pino.Logger, lines: Array<{ level: number, msg: string, [k: string]: unknown }> } {
  const lines: Array<{ level: number, msg: string }> = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } }))
  return { logger, lines }
}

t.test('a rebound page on loopback (no token: loopback is admin) can neither act, read, nor beat', async (t) => {
  const { logger, lines } = capture()
  const { app, settled, run } = await build(t, { logger })
  const attacks: Array<[string, InjectOptions]> = [
    ['POST revert/disable?indefinite=true', { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' }],
    ['POST vm/stop', { method: 'POST', url: '/api/v1/vm/stop' }],
    ['GET status', { url: '/api/v1/status' }],
    ['GET events', { url: '/api/v1/events' }],
    ['POST heartbeat', { method: 'POST', url: '/api/v1/heartbeat', payload: {} }],
    ['GET vm/restart', { url: '/api/v1/vm/restart' }]
  ]
  for (const [what, request] of attacks) {
    const r = await call(app, { ...request, remoteAddress: '127.0.0.1', headers: { ...REBOUND } })
    assertError(t, r, 403, 'HOST_NOT_ALLOWED', /attacker\.example.*security\.allowed_hosts/)
    t.comment(`${what}: ${r.status}`)
  }
  await settled()
  const view = app.watchdogs.get('test')!.view()
  t.equal(view.maintenance, null, 'no maintenance')
  t.equal((await app.hypervisor.domainState('test')).state, 'running', 'the VM still runs')
  t.equal(heartbeats(app), 0, 'the rebound heartbeat was not counted')
  const warned = lines.filter((l) => l.level === 40 && /Host "attacker\.example" is not a name of this service/.test(l.msg))
  t.equal(warned.length, 1, 'one warn line per address and minute, not one per refusal')
  await run(61_000)
  await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, remoteAddress: '127.0.0.1', headers: { host: 'attacker.example:8000' } })
  t.equal(lines.filter((l) => l.level === 40 && /^heartbeat refused: Host/.test(l.msg)).length, 1, 'a minute later the next refused heartbeat is logged at warn again')

  // The same requests naming the service keep working.
  t.equal((await call(app, { url: '/api/v1/status', headers: { host: '127.0.0.1:8000' } })).status, 200)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, headers: { host: 'localhost:8000' } })).status, 200)
  t.equal(heartbeats(app), 1)
  const own = { host: '127.0.0.1:8000', origin: 'http://127.0.0.1:8000', 'sec-fetch-site': 'same-origin' }
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true', headers: own })).status, 200, 'the dashboard on 127.0.0.1 still acts')
})

t.test('with a token, loopback heartbeats (taken without it) are Host-checked; the token is not', async (t) => {
  const { app } = await build(t, { config: { security: { admin_token: TOKEN } } })
  const r = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, headers: { host: 'attacker.example:8000' } })
  assertError(t, r, 403, 'HOST_NOT_ALLOWED', /the heartbeat was not counted/)
  t.equal(heartbeats(app), 0)
  t.equal((await call(app, { url: '/api/v1/status', headers: { host: 'attacker.example' } })).status, 403, 'an open read from a rebound page')
  const bearer = { authorization: `Bearer ${TOKEN}`, host: 'kiosk-by-any-name:8000' }
  t.equal((await call(app, { url: '/api/v1/status', headers: bearer })).status, 200, 'a read with the token: no page has it')
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true', headers: bearer })).status, 200, 'an action with the token')
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, headers: bearer })).status, 200, 'a heartbeat with the token')
  t.equal(heartbeats(app), 1)
  const wrong = await call(app, { url: '/api/v1/status', headers: { authorization: 'Bearer not-the-token-at-all', host: 'attacker.example' } })
  t.equal(wrong.status, 403, 'a wrong token proves nothing')
})

t.test('names that reach the service', async (t) => {
  const { app } = await build(t, { config: { api_host: 'kiosk-api.museum.lan', security: { allowed_hosts: ['Kiosk-Host.Museum.LAN'] } } })
  const machine = hostname().toLowerCase()
  const label = machine.split('.')[0]!
  for (const host of ['127.0.0.1:8000', '127.0.0.1', '[::1]:8000', '192.168.122.1:8000', '10.0.2.2', 'localhost', 'LOCALHOST:8000', 'localhost.:8000',
    'dashboard.localhost:8000', machine, `${label}:8000`, `${label}.local:8000`, 'kiosk-host.museum.lan:8000', 'kiosk-host.museum.lan.', 'kiosk-api.museum.lan']) {
    t.equal((await call(app, { url: '/api/v1/status', headers: { host } })).status, 200, `Host: ${host}`)
  }
  for (const host of ['attacker.example', '127.0.0.1.attacker.example', `${label}.attacker.example`, 'museum.lan', 'localhost.attacker.example',
    'user@127.0.0.1', '127.0.0.1/x', '[::1']) {
    assertError(t, await call(app, { url: '/api/v1/status', headers: { host } }), 403, 'HOST_NOT_ALLOWED')
  }
  t.equal((await call(app, { url: '/ui/', headers: { host: 'attacker.example' } })).status, 200, 'the dashboard\'s files hold no data: served to any Host')
})

t.test('refusedHost and serviceHostNames', async (t) => {
  const names = serviceHostNames('Kiosk.museum.lan', ['0.0.0.0', undefined, 'Extra.Example.'])
  t.same([...names].sort(), ['extra.example', 'kiosk', 'kiosk.local', 'kiosk.museum.lan'])
  t.equal(refusedHost(undefined, names), null, 'no Host header (HTTP/1.0): nothing to rebind')
  t.equal(refusedHost('', names), null)
  t.equal(refusedHost('KIOSK:8000', names), null)
  t.equal(refusedHost('kiosk.other.lan', names), 'kiosk.other.lan', 'not any NAME.<domain>: a guessable hostname must not open the door')
  t.equal(refusedHost('[::ffff:127.0.0.1]:80', names), null)
  t.equal(refusedHost('0x7f.1', names), null, 'what the browser takes for an IP address is one')
})

t.test('guests on guest networks: IP literals and browser-based exhibits', async (t) => {
  const { app } = await build(t)
  const guest = '192.168.122.50'
  for (const [how, headers] of [
    ['Sec-Fetch-Site: cross-site', { host: '192.168.122.1:8000', origin: 'http://exhibit.local', 'sec-fetch-site': 'cross-site' }],
    ['Origin: null (a page from file://)', { host: '192.168.122.1:8000', origin: 'null' }],
    ['curl', { host: '192.168.122.1:8000' }]
  ] as const) {
    const r = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, remoteAddress: guest, headers: { ...headers } })
    t.equal(r.status, 200, `heartbeat from the guest network, ${how}: ${r.res.body.slice(0, 200)}`)
  }
  t.equal(heartbeats(app), 3, 'all three counted')
  const revert = await call(app, { url: '/api/v1/revert/request?reason=exhibit', remoteAddress: guest, headers: { host: '192.168.122.1:8000', origin: 'null' } })
  t.equal(revert.status, 202, `a revert request from an exhibit's page is the guest's: ${revert.res.body.slice(0, 200)}`)
  const rebound = await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, remoteAddress: guest, headers: { host: 'attacker.example:8000' } })
  assertError(t, rebound, 403, 'HOST_NOT_ALLOWED')
  t.equal(heartbeats(app), 3)
  const admin = await call(app, { method: 'POST', url: '/api/v1/vm/stop', remoteAddress: guest, headers: { host: '192.168.122.1:8000', origin: 'null' } })
  t.equal(admin.status, 403, 'admin routes stay refused to the guest network')
})

t.test('loopback as a guest network (QEMU user networking): the host\'s browser stays cross-site checked', async (t) => {
  const { app } = await build(t, { config: { security: { guest_networks: ['127.0.0.0/8', '::1'] } } })
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, headers: { host: '127.0.0.1:8000', origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' } }), 403, 'CROSS_SITE_REQUEST')
  t.equal(heartbeats(app), 0)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/heartbeat', payload: {}, headers: { host: '10.0.2.2:8000' } })).status, 200, 'the guest\'s wget at 10.0.2.2')
  t.equal(heartbeats(app), 1)
})

t.test('QEMU user networking while loopback is not a guest network: an error at start', async (t) => {
  const xml = (devices: string) => `<domain type='test'><devices>${devices}</devices></domain>`
  const user = "<interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
  t.match(userNetworkingProblem('kiosk', xml(user), false, true), /VM "kiosk" uses QEMU user networking.*refused 401.*127\.0\.0\.0\/8.*before session 3/)
  t.equal(userNetworkingProblem('kiosk', xml(user), true, true), null, 'loopback listed')
  t.equal(userNetworkingProblem('kiosk', xml("<interface type='network'><source network='default'/></interface>"), false, true), null, 'libvirt NAT')

  const dir = mkdtempSync(join(tmpdir(), 'kvw-usernet-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'node.xml')
  writeFileSync(file, `<node><domain type='test'><name>usernet</name><memory>131072</memory><os><type>hvm</type></os><devices>${user}</devices></domain></node>`)
  const { logger, lines } = capture()
  const { settled } = await build(t, { uri: `test://${file}`, logger, config: { vm_name: 'usernet', libvirt_uri: `test://${file}` } })
  await settled()
  for (let i = 0; i < 50 && !lines.some((l) => l.level === 50 && /QEMU user networking/.test(l.msg)); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.ok(lines.some((l) => l.level === 50 && /VM "usernet" uses QEMU user networking/.test(l.msg)), 'logged at error')

  const listed = capture()
  await build(t, { uri: `test://${file}`, logger: listed.logger, config: { vm_name: 'usernet', libvirt_uri: `test://${file}`, security: { guest_networks: ['127.0.0.0/8'] } } })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.notOk(listed.lines.some((l) => /uses QEMU user networking/.test(l.msg)), 'nothing when loopback is a guest network')
})
