// Issue 13, last point: the dashboard with `read_requires_token`. A browser cannot send the
// Authorization header, so it logs in with the admin token and holds a session cookie (HttpOnly,
// SameSite=Strict). Written as the attacks on it: a wrong or guessed token, a forged or expired
// cookie, a cookie replayed after logout, a cross-site page (or another port of the host) riding
// the cookie, a wrong Bearer beside a good cookie. Fake clock throughout.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { assertError, build, call } from '../api/helpers.ts'
import { T0, TOKEN } from '../helpers/app.ts'
import { cookieValue, LOGIN_ATTEMPTS_PER_ADDRESS, LOGIN_ATTEMPTS_TOTAL, MAX_SESSIONS, SESSION_COOKIE, SESSION_TTL_MS, SessionStore, sessionCookie } from '../../src/plugins/session.ts'

const HOST = '127.0.0.1:8000'
const OWN_PAGE = { host: HOST, origin: `http://${HOST}`, 'sec-fetch-site': 'same-origin' }
const CONFIG = { startup_grace: 3600, security: { admin_token: TOKEN, read_requires_token: true } }

async function login (app: FastifyInstance, token: string, headers: Record<string, string> = OWN_PAGE, remoteAddress?: string) {
  return await call(app, { method: 'POST', url: '/api/v1/session', headers: { ...headers, 'content-type': 'application/json' }, payload: { token }, ...(remoteAddress ? { remoteAddress } : {}) })
}

/** The `name=value` part of the session Set-Cookie, to send back as a Cookie header. */
function cookieOf (res: { headers: Record<string, unknown> }): string {
  const set = String(res.headers['set-cookie'] ?? '')
  return set.split(';')[0]!
}

t.test('with read_requires_token, a login turns the admin token into a session cookie', async (t) => {
  const { app } = await build(t, { config: CONFIG })

  assertError(t, await call(app, { url: '/api/v1/status', headers: OWN_PAGE }), 401, 'UNAUTHORIZED', /admin token/)
  const page = await call(app, { url: '/ui/login', headers: OWN_PAGE })
  t.equal(page.status, 200, 'the login page is served without a token')
  t.match(page.res.headers['content-type'], /text\/html/)
  t.match(page.res.headers['content-security-policy'], /script-src 'self'/, 'with the dashboard\'s CSP')
  for (const file of ['/ui/', '/ui/app.js', '/ui/login.js', '/ui/style.css']) {
    t.equal((await call(app, { url: file, headers: OWN_PAGE })).status, 200, `${file} (no data in it) is served without a token`)
  }
  assertError(t, await call(app, { url: '/api/v1/events', headers: OWN_PAGE }), 401, 'UNAUTHORIZED')
  let state = await call(app, { url: '/api/v1/session', headers: OWN_PAGE })
  t.same(state.body, { read_requires_token: true, login_available: true, logged_in: false, expires_at: null }, 'GET /session tells the page a login is needed')

  const wrong = await login(app, 'not-the-token-0123456789')
  assertError(t, wrong, 401, 'UNAUTHORIZED', /not valid/)
  t.equal(wrong.res.headers['set-cookie'], undefined, 'a wrong token sets no cookie')

  const ok = await login(app, TOKEN)
  t.equal(ok.status, 200, 'the admin token logs in')
  const setCookie = String(ok.res.headers['set-cookie'])
  t.match(setCookie, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43}; `), 'a random 256-bit session id')
  t.match(setCookie, /; HttpOnly/, 'HttpOnly: page scripts cannot read it')
  t.match(setCookie, /; SameSite=Strict/, 'SameSite=Strict: not sent on requests from other sites')
  t.match(setCookie, /; Path=\//)
  t.match(setCookie, new RegExp(`; Max-Age=${SESSION_TTL_MS / 1000}`))
  t.notMatch(setCookie, /Secure/, 'not Secure over plain HTTP (the browser would drop it)')
  t.notMatch(setCookie, new RegExp(TOKEN), 'the cookie is not the token')
  t.equal(ok.res.headers['cache-control'], 'no-store')
  const cookie = cookieOf(ok.res)

  const withCookie = { ...OWN_PAGE, cookie }
  t.equal((await call(app, { url: '/api/v1/status', headers: withCookie })).status, 200, 'the cookie reads status')
  t.equal((await call(app, { url: '/api/v1/events', headers: withCookie })).status, 200, 'and events')
  t.equal((await call(app, { url: '/api/v1/status', headers: { cookie } })).status, 200, 'a client without Fetch Metadata (curl -b) too')
  state = await call(app, { url: '/api/v1/session', headers: withCookie })
  t.match(state.body, { logged_in: true, expires_at: new Date(T0 + SESSION_TTL_MS).toISOString() }, 'GET /session: logged in, until when')

  // The session stands for the admin token: actions work, from the service's own pages.
  const disable = await call(app, { method: 'POST', url: '/api/v1/revert/disable?minutes=5', headers: withCookie })
  t.equal(disable.status, 200, `an admin action with the cookie (${disable.res.body.slice(0, 200)})`)
  t.equal(app.watchdogs.get('test')!.view().maintenance?.reason, 'technician')
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/enable', headers: withCookie })).status, 200)

  // A wrong Bearer next to a good cookie is still a wrong token.
  assertError(t, await call(app, { url: '/api/v1/status', headers: { ...withCookie, authorization: 'Bearer wrong-token-0123456789' } }), 401, 'UNAUTHORIZED', /not valid/)
  // A forged cookie.
  assertError(t, await call(app, { url: '/api/v1/status', headers: { ...OWN_PAGE, cookie: `${SESSION_COOKIE}=${'A'.repeat(43)}` } }), 401, 'UNAUTHORIZED')
  assertError(t, await call(app, { url: '/api/v1/status', headers: { ...OWN_PAGE, cookie: `${SESSION_COOKIE}=${TOKEN}` } }), 401, 'UNAUTHORIZED', undefined)
})

t.test('the cookie never works for another site, and actions stay refused cross-site', async (t) => {
  const { app } = await build(t, { config: CONFIG })
  const cookie = cookieOf((await login(app, TOKEN)).res)
  for (const [how, headers] of [
    ['Sec-Fetch-Site: cross-site', { host: HOST, origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site (a page on another port of this host: SameSite lets the cookie through)', { host: HOST, origin: 'http://127.0.0.1:9999', 'sec-fetch-site': 'same-site' }],
    ['Origin only', { host: HOST, origin: 'http://evil.example' }]
  ] as const) {
    assertError(t, await call(app, { url: '/api/v1/status', headers: { ...headers, cookie } }), 401, 'UNAUTHORIZED', undefined)
    t.comment(`read, ${how}: refused`)
    assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true', headers: { ...headers, cookie } }), 403, 'CROSS_SITE_REQUEST')
    assertError(t, await call(app, { url: '/api/v1/vm/stop', headers: { ...headers, cookie } }), 403, 'CROSS_SITE_REQUEST')
    assertError(t, await login(app, TOKEN, headers), 403, 'CROSS_SITE_REQUEST', /Login/)
    assertError(t, await call(app, { method: 'DELETE', url: '/api/v1/session', headers: { ...headers, cookie } }), 403, 'CROSS_SITE_REQUEST', /Logout/)
  }
  t.equal(app.watchdogs.get('test')!.view().maintenance, null, 'no maintenance was switched on')
  t.equal((await app.hypervisor.domainState('test')).state, 'running', 'the VM was not stopped')
  t.equal((await call(app, { url: '/api/v1/status', headers: { ...OWN_PAGE, cookie } })).status, 200, 'the session is still good for the service\'s own pages')
})

t.test('a session ends at its expiry, at logout, and when the admin token changes', async (t) => {
  const { app, clock } = await build(t, { config: CONFIG })
  const cookie = cookieOf((await login(app, TOKEN)).res)
  const read = async (c = cookie) => (await call(app, { url: '/api/v1/status', headers: { ...OWN_PAGE, cookie: c } })).status
  // 12 hours pass: the watchdog stays in maintenance meanwhile (no reverts of a guest that never beats).
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200)

  clock!.advance(SESSION_TTL_MS - 1)
  t.equal(await read(), 200, 'good until its expiry')
  clock!.advance(1)
  t.equal(await read(), 401, 'refused from its expiry on (not extended by use)')
  t.equal(app.sessions.size, 0, 'and forgotten')

  const second = cookieOf((await login(app, TOKEN)).res)
  t.equal(await read(second), 200)
  const out = await call(app, { method: 'DELETE', url: '/api/v1/session', headers: { ...OWN_PAGE, cookie: second } })
  t.equal(out.status, 200)
  t.equal(out.body.details.logged_out, true)
  t.match(String(out.res.headers['set-cookie']), new RegExp(`^${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`), 'the cookie is cleared')
  t.equal(await read(second), 401, 'a copy of the cookie kept after logout is refused: the session ended on the server')
  t.equal((await call(app, { method: 'DELETE', url: '/api/v1/session', headers: OWN_PAGE })).body.details.logged_out, false, 'logout without a session is harmless')

  // A changed token ends the sessions opened with the old one (today security.* changes only with
  // a restart, which ends them anyway; this keeps it so if the token ever reloads in place).
  const third = cookieOf((await login(app, TOKEN)).res)
  const security = app.config.config.security as { admin_token?: string }
  const old = security.admin_token
  security.admin_token = 'a-new-admin-token-after-reload'
  t.teardown(() => { security.admin_token = old })
  t.equal(app.sessions.check(cookieValue(third, SESSION_COOKIE)), null, 'a session of the old token is over')
})

t.test('login attempts are rate limited per address and in total', async (t) => {
  const { app, clock } = await build(t, { config: { ...CONFIG, security: { ...CONFIG.security, rate_limit_read: 1000 } } })
  for (let i = 1; i <= LOGIN_ATTEMPTS_PER_ADDRESS; i++) {
    t.equal((await login(app, `guess-number-${i}-0123456789`)).status, 401, `guess ${i}: wrong`)
  }
  const limited = await login(app, TOKEN)
  assertError(t, limited, 429, 'RATE_LIMITED', /Too many login attempts/)
  t.equal(limited.res.headers['retry-after'], '60', 'Retry-After: the rest of the window')
  t.equal(limited.res.headers['set-cookie'], undefined, 'even the right token gets no session while limited')
  // Keep hammering from the same address past the total limit: refused attempts over the address's
  // own limit do not count toward the total, so the technician at another address still logs in.
  for (let i = 0; i < LOGIN_ATTEMPTS_TOTAL + 10; i++) {
    t.equal((await login(app, `guess-more-${i}-0123456789`)).status, 429, `further guess ${i}: limited`)
  }
  t.equal((await login(app, TOKEN, OWN_PAGE, '127.0.0.2')).status, 200, 'another address is not blocked by this one, even after 80 attempts from it')

  clock!.advance(60_000)
  t.equal((await login(app, TOKEN)).status, 200, 'the next window logs in again')

  // Many addresses together: the total limit.
  clock!.advance(60_000)
  const statuses: number[] = []
  for (let i = 0; i < LOGIN_ATTEMPTS_TOTAL + 5; i++) {
    statuses.push((await login(app, `guess-${i}-0123456789abcdef`, OWN_PAGE, `10.0.${Math.floor(i / 5)}.${i % 5 + 1}`)).status)
  }
  t.equal(statuses.filter((s) => s === 401).length, LOGIN_ATTEMPTS_TOTAL, `${LOGIN_ATTEMPTS_TOTAL} guesses a minute from all addresses together`)
  t.equal(statuses.filter((s) => s === 429).length, 5, 'then 429')
})

t.test('without an admin token there is nothing to log in with', async (t) => {
  const { app } = await build(t, { config: { startup_grace: 3600, security: { read_requires_token: true } } })
  const r = await login(app, TOKEN)
  assertError(t, r, 409, 'CONFLICT', /No admin token is configured/)
  t.equal(r.res.headers['set-cookie'], undefined)
  t.match((await call(app, { url: '/api/v1/session', headers: OWN_PAGE })).body, { read_requires_token: true, login_available: false, logged_in: false })
  t.equal((await call(app, { url: '/api/v1/status', headers: OWN_PAGE })).status, 200, 'reads answer loopback, as admin endpoints do without a token')
})

t.test('without read_requires_token, reads stay open and the login still opens admin actions', async (t) => {
  const { app } = await build(t, { config: { startup_grace: 3600, security: { admin_token: TOKEN } } })
  t.equal((await call(app, { url: '/api/v1/status', headers: OWN_PAGE })).status, 200)
  assertError(t, await call(app, { method: 'POST', url: '/api/v1/revert/enable', headers: OWN_PAGE }), 401, 'UNAUTHORIZED')
  const cookie = cookieOf((await login(app, TOKEN)).res)
  t.equal((await call(app, { method: 'POST', url: '/api/v1/revert/enable', headers: { ...OWN_PAGE, cookie } })).status, 200, 'the dashboard acts without the token prompt')
  assertError(t, await login(app, '', OWN_PAGE), 400, 'BAD_REQUEST', /token/)
})

t.test('the store: bounded, ids hashed, Secure only over TLS', async (t) => {
  let now = 0
  const store = new SessionStore(() => now, () => TOKEN)
  const ids: string[] = []
  for (let i = 0; i < MAX_SESSIONS + 1; i++) {
    now += 1000
    const r = store.login(TOKEN, `10.1.${i}.1`)
    if (r.ok) ids.push(r.id)
  }
  t.equal(store.size, MAX_SESSIONS, `at most ${MAX_SESSIONS} sessions`)
  t.equal(store.check(ids[0]!), null, 'the oldest went first')
  t.not(store.check(ids.at(-1)!), null)
  t.equal(store.check('x'.repeat(5000)), null, 'an over-long cookie is not even hashed')
  t.match(sessionCookie('abc', 60, true), /; Secure$/)
  t.notMatch(sessionCookie('abc', 60, false), /Secure/)
  t.equal(cookieValue('a=1; kvw_session=xyz; b=2', SESSION_COOKIE), 'xyz')
  t.equal(cookieValue('kvw_session_other=1', SESSION_COOKIE), null)
})
