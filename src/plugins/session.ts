// Dashboard logins: a browser cannot send `Authorization: Bearer`, so with
// `security.read_requires_token` (or an admin token) the dashboard logs in once with the admin
// token and then holds a session cookie (issue #13). The cookie stands for the admin token; it is
// accepted (by the security plugin's admin check) only on requests that are not cross-site, and
// actions keep their own cross-site refusal before any credential is looked at.
// Sessions are random ids held in memory, not signed cookies: logout and token changes end them
// at once on the server, there is no signing key to create, keep secret and rotate, and a
// restart logging technicians out is harmless. The store keeps SHA-256 of each id (a memory dump
// or a timing leak of the map does not hand out a usable cookie), expires them on the app's clock,
// and holds at most MAX_SESSIONS (the oldest go first). No timers: expiry is checked on use.
import { createHash, randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { crossSiteReason, tokenMatches, WindowCounter } from './security.ts'
import { normalizeAddress } from '../net/addresses.ts'

export const SESSION_COOKIE = 'kvw_session'
/** A session lasts one working day from its login, then the technician logs in again. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000
/** Sessions held at once; a new login beyond this ends the oldest. */
export const MAX_SESSIONS = 64
/** Login attempts (right or wrong) per client address and minute; more answer 429. */
export const LOGIN_ATTEMPTS_PER_ADDRESS = 10
/** Login attempts per minute from all addresses together (guessing from many addresses). */
export const LOGIN_ATTEMPTS_TOTAL = 60

declare module 'fastify' {
  interface FastifyInstance {
    /** The dashboard's login sessions (see src/plugins/session.ts). */
    sessions: SessionStore
  }
}

interface Session {
  expiresAt: number
  /** SHA-256 of the admin token it was opened with: a changed token ends the session. */
  tokenHash: string
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

/** The value of cookie NAME in a Cookie header, or null. */
export function cookieValue (header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return null
}

/** The Set-Cookie value for a session id (or for clearing it: id '' and maxAgeSeconds 0). */
export function sessionCookie (id: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`
}

/** True when the request came over TLS on our own socket (no proxy headers are trusted). */
export function overTls (request: FastifyRequest): boolean {
  return (request.raw.socket as { encrypted?: boolean }).encrypted === true
}

export type LoginResult =
  | { ok: true, id: string, expiresAt: number }
  | { ok: false, reason: 'no_token' | 'wrong_token' }
  | { ok: false, reason: 'rate_limited', retryAfterSeconds: number }

export class SessionStore {
  readonly #sessions = new Map<string, Session>()
  readonly #now: () => number
  readonly #token: () => string | null
  readonly #perAddress: WindowCounter
  readonly #total: WindowCounter

  /** `token` is read on every use, so a reloaded admin token applies at once. */
  constructor (now: () => number, token: () => string | null) {
    this.#now = now
    this.#token = token
    this.#perAddress = new WindowCounter(60_000, now)
    this.#total = new WindowCounter(60_000, now, 1)
  }

  /** Counts the attempt, then opens a session when PRESENTED is the admin token. */
  login (presented: string, address: string): LoginResult {
    const mine = this.#perAddress.hit(address)
    // An attempt already over its address's limit is refused without counting toward the total:
    // one address spends at most its share of the total, and cannot lock out everyone else.
    if (mine.count > LOGIN_ATTEMPTS_PER_ADDRESS) return this.#limited(mine.resetAt)
    const all = this.#total.hit('all')
    if (all.count > LOGIN_ATTEMPTS_TOTAL) return this.#limited(all.resetAt)
    const token = this.#token()
    if (token === null) return { ok: false, reason: 'no_token' }
    if (!tokenMatches(presented, token)) return { ok: false, reason: 'wrong_token' }
    this.#sweep()
    const id = randomBytes(32).toString('base64url')
    const expiresAt = this.#now() + SESSION_TTL_MS
    this.#sessions.set(sha256(id), { expiresAt, tokenHash: sha256(token) })
    if (this.#sessions.size > MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!)
    return { ok: true, id, expiresAt }
  }

  /** The session's expiry (epoch ms) when ID is a live session for the current token, else null. */
  check (id: string | null): number | null {
    if (id === null || id === '' || id.length > 100) return null
    const key = sha256(id)
    const session = this.#sessions.get(key)
    if (session === undefined) return null
    const token = this.#token()
    if (this.#now() >= session.expiresAt || token === null || sha256(token) !== session.tokenHash) {
      this.#sessions.delete(key)
      return null
    }
    return session.expiresAt
  }

  /** Ends the session (logout); unknown ids are ignored. */
  end (id: string | null): void {
    if (id !== null) this.#sessions.delete(sha256(id))
  }

  /** The request's session expiry, when it carries a live session cookie and is not cross-site. */
  of (request: FastifyRequest): number | null {
    const id = cookieValue(request.headers.cookie, SESSION_COOKIE)
    if (id === null) return null
    // SameSite=Strict already keeps the cookie off cross-site requests, but "site" ignores the
    // port: a page on another port of this host would send it. Those never count.
    if (crossSiteReason(request.headers) !== null) return null
    return this.check(id)
  }

  /** For the security plugin: the request carries a live session (it stands for the admin token). */
  admits (request: FastifyRequest): boolean {
    return this.of(request) !== null
  }

  get size (): number {
    return this.#sessions.size
  }

  #limited (resetAt: number): LoginResult {
    return { ok: false, reason: 'rate_limited', retryAfterSeconds: Math.max(1, Math.ceil((resetAt - this.#now()) / 1000)) }
  }

  #sweep (): void {
    const now = this.#now()
    for (const [key, session] of this.#sessions) if (now >= session.expiresAt) this.#sessions.delete(key)
  }
}

export default fp(async function sessionPlugin (app: FastifyInstance) {
  app.decorate('sessions', new SessionStore(() => app.clock.now(), () => app.config.config.security.admin_token ?? null))
}, { name: 'session', fastify: '5.x', dependencies: ['security'] })

/** The client address a login attempt is counted against. */
export function clientAddress (request: FastifyRequest): string {
  return normalizeAddress(request.socket.remoteAddress ?? '')
}
