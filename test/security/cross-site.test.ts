// Issue 13, point 1, written as the attack: with the default config (no admin token, admin =
// loopback) a page on any site, open in a browser on the kiosk host, makes the browser call the
// admin actions (a link, an <img>, a form). Those requests carry `Sec-Fetch-Site: cross-site`
// (or only an `Origin` in older browsers) and must be refused before anything runs; HEAD must
// never run an action; the same requests from the service's own pages, from curl (neither
// header) and from a typed URL (`Sec-Fetch-Site: none`) keep working.
import t from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { crossSiteReason } from '../../src/plugins/security.ts'
import { assertError, build, call } from '../api/helpers.ts'

const HOST = '127.0.0.1:8000'
const EVIL = { host: HOST, origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' }
const OWN_PAGE = { host: HOST, origin: `http://${HOST}`, 'sec-fetch-site': 'same-origin' }

const ACTIONS: Array<[string, InjectOptions]> = [
  ['GET vm/stop', { url: '/api/v1/vm/stop' }],
  ['POST vm/stop', { method: 'POST', url: '/api/v1/vm/stop' }],
  ['GET revert/disable?indefinite=true', { url: '/api/v1/revert/disable?indefinite=true' }],
  ['POST revert/disable?indefinite=true', { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' }],
  ['GET snapshot/create?snapshot_name=evil', { url: '/api/v1/snapshot/create?snapshot_name=evil' }],
  ['POST snapshot/create (form-like JSON body)', { method: 'POST', url: '/api/v1/snapshot/create', payload: { snapshot_name: 'evil' } }],
  ['GET per-VM vm/stop', { url: '/api/v1/vms/test/vm/stop' }]
]

/** What the attack would change: VM running, maintenance, snapshots, heartbeats. */
async function damage (app: FastifyInstance): Promise<Record<string, unknown>> {
  const view = app.watchdogs.get('test')!.view()
  const snapshots = (await call(app, '/api/v1/snapshots')).body.snapshots.map((s: string | { name: string }) => typeof s === 'string' ? s : s.name)
  return {
    maintenance: view.maintenance?.reason ?? null,
    evilSnapshot: snapshots.some((n: string) => n.startsWith('evil')),
    running: (await app.hypervisor.domainState('test')).state,
    heartbeats: view.heartbeatsTotal
  }
}

t.test('cross-site requests to admin actions are refused and change nothing', async (t) => {
  const { app, settled } = await build(t)
  const before = await damage(app)
  t.match(before, { maintenance: null, evilSnapshot: false, heartbeats: 0 })
  for (const [what, request] of ACTIONS) {
    for (const [how, headers] of [
      ['Sec-Fetch-Site: cross-site', EVIL],
      ['Sec-Fetch-Site: same-site (another port of this host)', { host: HOST, origin: 'http://127.0.0.1:9999', 'sec-fetch-site': 'same-site' }],
      ['Origin only (a browser without Fetch Metadata)', { host: HOST, origin: 'http://evil.example' }],
      ['Origin: null (a sandboxed frame)', { host: HOST, origin: 'null' }]
    ] as const) {
      const r = await call(app, { ...request, headers: { ...headers } })
      assertError(t, r, 403, 'CROSS_SITE_REQUEST', /another site/)
      t.comment(`${what}, ${how}: ${r.status}`)
    }
  }
  await settled()
  t.same(await damage(app), before, 'the VM still runs, no maintenance, no snapshot "evil"')
  const r = await call(app, { url: '/api/v1/heartbeat', headers: EVIL })
  assertError(t, r, 403, 'CROSS_SITE_REQUEST', /Guest endpoints/)
  t.equal((await damage(app)).heartbeats, 0, 'a page cannot fake heartbeats either')
  const revert = await call(app, { url: '/api/v1/vm/restart', headers: EVIL })
  t.equal(revert.status, 403, 'nor ask for a guest revert')
})

t.test('HEAD never runs an action', async (t) => {
  const { app, settled } = await build(t)
  const before = await damage(app)
  for (const url of ['/api/v1/vm/stop', '/api/v1/revert/disable?indefinite=true', '/api/v1/snapshot/create?snapshot_name=evil',
    '/api/v1/vms/test/revert/disable?indefinite=true', '/api/v1/revert/request?reason=x', '/api/v1/heartbeat', '/api/v1/snapshot/delete/ready']) {
    const res = await app.inject({ method: 'HEAD', url })
    t.equal(res.statusCode, 405, `HEAD ${url}: 405`)
    t.match(res.headers.allow, /GET/, 'Allow names the methods')
  }
  await settled()
  t.same(await damage(app), before, 'nothing happened')
  t.equal((await app.inject({ method: 'HEAD', url: '/api/v1/status' })).statusCode, 200, 'HEAD on a read endpoint still answers')
  t.equal((await app.inject({ method: 'HEAD', url: '/ui/' })).statusCode, 200, 'and on the dashboard')
})

t.test('the service\'s own pages, curl and a typed URL keep working', async (t) => {
  const { app, settled } = await build(t)
  const ok = async (request: InjectOptions, status: number, what: string) => {
    const r = await call(app, request)
    t.equal(r.status, status, `${what} (${r.res.body.slice(0, 200)})`)
  }
  await ok({ method: 'POST', url: '/api/v1/revert/disable?minutes=30', headers: OWN_PAGE }, 200, 'the dashboard (same-origin fetch)')
  await ok({ method: 'POST', url: '/api/v1/revert/enable', headers: { host: HOST, origin: `http://${HOST}` } }, 200, 'same origin, no Fetch Metadata')
  await ok({ method: 'POST', url: '/api/v1/revert/enable', headers: { host: 'LOCALHOST:80', origin: 'http://localhost' } }, 200, 'same origin written differently (case, default port)')
  await ok({ url: '/api/v1/revert/disable?indefinite=true', headers: { host: HOST, 'sec-fetch-site': 'none' } }, 200, 'a typed URL or bookmark')
  await ok({ url: '/api/v1/revert/enable' }, 200, 'curl: neither header')
  await ok({ url: '/api/v1/snapshot/create?snapshot_name=mine', headers: OWN_PAGE }, 201, 'snapshot from the own page')
  await ok({ url: '/api/v1/heartbeat?seq=1', headers: { host: HOST } }, 200, 'a guest script (no browser headers)')
  await ok({ url: '/api/v1/status', headers: EVIL }, 200, 'reading is not an action (a cross-site page cannot read the answer anyway)')
  await ok({ url: '/api/v1/vm/stop', headers: OWN_PAGE }, 202, 'vm/stop from the own page')
  await settled()
})

t.test('crossSiteReason: the rule itself', async (t) => {
  const own = { host: 'kiosk:8000' }
  t.equal(crossSiteReason({ ...own }), null, 'no browser headers')
  t.equal(crossSiteReason({ ...own, 'sec-fetch-site': 'same-origin', origin: 'http://evil.example' }), null, 'Fetch Metadata wins over Origin')
  t.equal(crossSiteReason({ ...own, 'sec-fetch-site': 'none' }), null)
  t.match(crossSiteReason({ ...own, 'sec-fetch-site': 'cross-site' }), /Sec-Fetch-Site: cross-site/)
  t.match(crossSiteReason({ ...own, 'sec-fetch-site': 'same-site' }), /same-site/)
  t.match(crossSiteReason({ ...own, 'sec-fetch-site': 'bogus' }), /bogus/, 'an unknown value is not trusted')
  t.equal(crossSiteReason({ ...own, origin: 'http://kiosk:8000' }), null)
  t.equal(crossSiteReason({ host: 'kiosk:80', origin: 'http://KIOSK' }), null, 'compared as hosts: case and the default port do not matter')
  t.equal(crossSiteReason({ ...own, origin: 'https://kiosk:8000' }), null, 'the host is compared, not the scheme (as Go does)')
  t.match(crossSiteReason({ ...own, origin: 'http://kiosk:8001' }), /not this service/)
  t.match(crossSiteReason({ ...own, origin: 'file://' }), /not http/)
  t.match(crossSiteReason({ origin: 'http://kiosk:8000' }), /Host: none/, 'an Origin without a Host cannot be checked')
  t.match(crossSiteReason({ ...own, origin: 'x'.repeat(5000) }), /^Origin x{200} \(not a URL\)$/, 'a long header is cut in the message')
})
