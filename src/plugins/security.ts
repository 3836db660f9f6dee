// Who may call what. Each route says it in its config: `access: 'guest' | 'admin' | 'read'`
// (none = 'admin', the safe default).
//   guest: heartbeat and revert request. Who asks decides the rules (request.requester): from
//          `security.guest_networks` it is the guest (guest limits, maintenance and the revert
//          budget apply); with the admin token, on the admin listener, or from loopback when
//          loopback is not a guest network and no token is configured, it is a technician
//          (EVC's "Revert to Snapshot" button is GET /vm/restart: never refused by guest rules).
//          A heartbeat from loopback is accepted even when a token is configured (quick start).
//   admin: everything that changes state; `Authorization: Bearer <admin_token>` when a token is
//          configured, else loopback only.
//   read:  status, events, metrics, dashboard, docs; anyone who reaches the port, unless
//          `read_requires_token` makes it admin-like.
// Addresses come from the socket (request.socket.remoteAddress): no proxy headers are trusted.
// Cross-site browser requests never reach an action (admin or guest route): Fetch Metadata
// (`Sec-Fetch-Site`) first, else `Origin` against `Host`, as Go's CrossOriginProtection does;
// clients that send neither (curl, guest scripts) pass. HEAD never runs an action (405). A guest
// route called from a guest network (not loopback) is exempt: whatever sent it, it is the
// guest's (a browser-based exhibit's fetch() too), and the guest could send it directly anyway.
// DNS rebinding: what the network alone grants (loopback as admin without a token, a guest
// network, loopback heartbeats, open read routes) is granted only to a Host header naming this
// service (hostAllowed: an IP literal, localhost, this machine's name, api_host/admin_host,
// security.allowed_hosts); else 403 HOST_NOT_ALLOWED. A valid token or dashboard login needs no
// such check: a page on another name has neither.
// Rate limits: admin and read routes count per client address and access class
// (@fastify/rate-limit, before the access check, so guessing the token is limited too). Guest
// routes count per VM identity and address (several guests and host tools share 127.0.0.1 under
// QEMU user networking) after the body is parsed; a heartbeat over its limit is still counted by
// the watchdog (the handler does that first) and only its answer is a short 429: a limit
// never turns a live guest into a hung one. A refused storm is logged once per key and window.
// With `security.admin_port`, admin endpoints move to a second listener (app.listenAdmin) and the
// main listener answers them 404; guest endpoints on the admin listener are a technician's (admin
// rules: loopback or the token).
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { isIPv4, isIPv6, type AddressInfo, type Socket } from 'node:net'
import { hostname as machineHostname } from 'node:os'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import fp from 'fastify-plugin'
import { parseDomainXml } from '../doctor/domain-xml.ts'
import { AppError, ERROR_CODES, errorBodyOf, type ErrorBody } from '../errors.ts'
import { isLoopback, networkList, normalizeAddress } from '../net/addresses.ts'

export const ACCESS_LEVELS = ['guest', 'admin', 'read'] as const
export type Access = typeof ACCESS_LEVELS[number]
/** What admitted a request: a credential (token, dashboard login), its address alone, an open read route, or a route without data (any Host). */
type Grant = 'credential' | 'network' | 'open' | 'public'
/** Who is behind a request to a guest route (see the header comment). */
export type Requester = 'guest' | 'technician'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (default 'admin'); enforced by the security plugin. */
    access?: Access
    /**
     * The route is the liveness signal (the heartbeat): its guest limit never refuses before the
     * handler; the handler counts the heartbeat, then answers `request.overLimit` with 429.
     */
    liveness?: boolean
    /** A read route served even with read_requires_token (the login and the dashboard's files, which hold no data). */
    alwaysOpen?: boolean
  }
  interface FastifyRequest {
    /** On a liveness route: set when the request is over its guest limit (see rateLimitedReply). */
    overLimit: OverLimit | null
    /**
     * On a guest route: who asks. 'guest' (from security.guest_networks) or 'technician' (the
     * admin token, the admin listener, or loopback that is not a guest network). Set by the
     * access check; null on other routes.
     */
    requester: Requester | null
  }
  interface FastifyInstance {
    /**
     * Starts the admin listener (security.admin_host/admin_port unless given). It serves the
     * same app; only admin and read endpoints answer there. Closed with the app.
     */
    listenAdmin (options?: { host?: string, port?: number }): Promise<AddressInfo>
  }
}

/** Compares in constant time whatever the lengths (both sides are hashed first). */
export function tokenMatches (presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** The token of an `Authorization: Bearer <token>` header, null when there is none. */
export function bearerToken (header: string | undefined): string | null {
  if (header === undefined) return null
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  return m ? m[1]! : null
}

/**
 * Hits per key in fixed windows on the app's clock: O(1) a hit, at most `capacity` keys (the
 * least recently hit are dropped first), so a storm from many keys cannot grow it without bound.
 */
export class WindowCounter {
  readonly #windows = new Map<string, { start: number, count: number }>()
  readonly #windowMs: number
  readonly #capacity: number
  readonly #now: () => number

  constructor (windowMs: number, now: () => number, capacity = 10_000) {
    this.#windowMs = windowMs
    this.#now = now
    this.#capacity = capacity
  }

  /** Counts one hit of KEY: the hits in its current window so far, and when that window ends (epoch ms). */
  hit (key: string): { count: number, resetAt: number } {
    const now = this.#now()
    let w = this.#windows.get(key)
    // A clock set back starts a new window rather than locking the key out until it catches up.
    if (w === undefined || now >= w.start + this.#windowMs || now < w.start) w = { start: now, count: 0 }
    this.#windows.delete(key)
    this.#windows.set(key, w)
    if (this.#windows.size > this.#capacity) this.#windows.delete(this.#windows.keys().next().value!)
    w.count++
    return { count: w.count, resetAt: w.start + this.#windowMs }
  }

  get size (): number {
    return this.#windows.size
  }
}

/** A guest request over its limit: who, how many are allowed, when to retry. */
export interface OverLimit {
  vm: string
  address: string
  max: number
  retryAfterSeconds: number
}

/**
 * Answers 429 RATE_LIMITED with Retry-After, sent directly (not thrown): a refused storm must not
 * cost a log line per request (the security plugin logs the first refusal of each window).
 */
export function rateLimitedReply (reply: FastifyReply, over: OverLimit, message: string, details?: Record<string, unknown>): FastifyReply {
  const body: ErrorBody = errorBodyOf('RATE_LIMITED', message, details)
  return reply.code(ERROR_CODES.RATE_LIMITED.status).header('retry-after', String(over.retryAfterSeconds)).send(body)
}

/**
 * Why a request is a cross-site browser request, or null when it is not. Fetch Metadata first
 * (every current browser sends `Sec-Fetch-Site`): only `same-origin` and `none` (typed URL,
 * bookmark) pass, `same-site` (another port or subdomain) does not. Without it, an `Origin` must
 * name this very host (scheme://Host). Neither header: not a browser page (curl, guest scripts),
 * or an old browser's plain navigation; those pass.
 */
export function crossSiteReason (headers: FastifyRequest['headers']): string | null {
  const site = headers['sec-fetch-site']
  if (typeof site === 'string' && site !== '') {
    if (site === 'same-origin' || site === 'none') return null
    return `Sec-Fetch-Site: ${site.slice(0, 40)}`
  }
  const origin = headers.origin
  if (origin === undefined || origin === '') return null
  const shown = `Origin ${origin.slice(0, 200)}`
  let originUrl: URL
  try {
    originUrl = new URL(origin)
  } catch {
    return `${shown} (not a URL)`
  }
  if (originUrl.protocol !== 'http:' && originUrl.protocol !== 'https:') return `${shown} (not http or https)`
  const host = headers.host ?? ''
  let ownHost: string | null
  try {
    // Normalised the same way (case, the scheme's default port) before comparing.
    ownHost = host === '' ? null : new URL(`${originUrl.protocol}//${host}`).host
  } catch {
    ownHost = null
  }
  if (ownHost !== null && originUrl.host === ownHost) return null
  return `${shown} is not this service (Host: ${host.slice(0, 200) || 'none'})`
}

/** A Host header's hostname (lower case, no trailing dot, IPv6 in brackets); null when it is not a plain host[:port]. */
export function hostnameOfHostHeader (host: string): string | null {
  let url: URL
  try {
    url = new URL(`http://${host}`)
  } catch {
    return null
  }
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || host.includes('/')) return null
  return url.hostname.replace(/\.$/, '')
}

/**
 * Whether a Host header names this service, for requests trusted for where they come from (DNS
 * rebinding: a page on attacker.example rebound to 127.0.0.1 sends `Host: attacker.example`).
 * IP literals cannot be rebound; browsers resolve localhost and *.localhost themselves; NAMES
 * are this machine's and the configured ones (lower case). No Host header (HTTP/1.0): nothing
 * to rebind, allowed. Returns null when allowed, else the hostname (or header) refused.
 */
export function refusedHost (host: string | undefined, names: ReadonlySet<string>): string | null {
  if (host === undefined || host === '') return null
  const name = hostnameOfHostHeader(host)
  if (name === null) return host.slice(0, 200)
  if (isIPv4(name) || (name.startsWith('[') && name.endsWith(']') && isIPv6(name.slice(1, -1)))) return null
  if (name === 'localhost' || name.endsWith('.localhost')) return null
  return names.has(name) ? null : name
}

/**
 * The names a Host header may give besides IP literals and localhost: this machine's name (as
 * os.hostname() says it, its first label, and LABEL.local for mDNS), api_host and admin_host
 * when they are names, and security.allowed_hosts. Not any `LABEL.<domain>`: with a common
 * hostname (ubuntu, raspberrypi) a page could guess `ubuntu.attacker.example`; a full name of
 * this machine goes in security.allowed_hosts.
 */
export function serviceHostNames (machine: string, configured: ReadonlyArray<string | undefined>): Set<string> {
  const names = new Set<string>()
  const add = (n: string | undefined) => {
    const name = n?.toLowerCase().replace(/\.$/, '')
    if (name && !isIPv4(name) && !isIPv6(name)) names.add(name)
  }
  add(machine)
  const label = machine.split('.')[0]
  if (label) {
    add(label)
    add(`${label}.local`)
  }
  for (const n of configured) add(n)
  return names
}

/**
 * Why a watched VM's guest (QEMU user networking: its requests come from 127.0.0.1) is taken for
 * the host, or null: its domain XML has a `user` interface (as the doctor's guest_network check
 * tells) while loopback is not in security.guest_networks.
 */
export function userNetworkingProblem (vm: string, domainXml: string, loopbackIsGuest: boolean, tokenSet: boolean): string | null {
  if (loopbackIsGuest) return null
  if (!parseDomainXml(domainXml).interfaces.some((i) => i.type === 'user')) return null
  return `VM "${vm}" uses QEMU user networking: its guest's heartbeats and revert requests come from 127.0.0.1, which is not in security.guest_networks, so they are taken for a technician's on this host (no guest limits${tokenSet ? '; with admin_token set, its revert requests are refused 401' : ''}). Add 127.0.0.0/8 and '::1' to security.guest_networks (before session 3 the default guest_networks included loopback and 10.0.2.0/24; see docs/migration.md)`
}

export function accessOf (request: FastifyRequest): Access {
  return request.routeOptions.config.access ?? 'admin'
}

export default fp(async function securityPlugin (app: FastifyInstance) {
  const security = app.config.config.security
  if (security.admin_token_file !== undefined && security.admin_token === undefined) {
    // parseConfig alone does not read files; loadConfig does. Refusing to start beats running
    // with admin endpoints silently open to loopback.
    throw new Error('security.admin_token_file is set but the token was not read: load the configuration with loadConfig()')
  }
  const token = security.admin_token ?? null
  const isGuestNetwork = networkList(security.guest_networks)
  const split = security.admin_port !== undefined
  const limits: Record<Access, number> = { guest: security.rate_limit_guest, admin: security.rate_limit_admin, read: security.rate_limit_read }
  const adminSockets = new WeakSet<Socket>()
  const now = () => app.clock.now()
  // Guest requests per (route kind, VM, address); token tries on guest routes per address.
  const guestWindows = new WindowCounter(60_000, now)
  const tokenTries = new WindowCounter(60_000, now)
  // Requests refused for their Host, per address: the first of each minute is logged at warn.
  const hostRefusals = new WindowCounter(60_000, now)
  const machine = machineHostname()
  const hostNames = serviceHostNames(machine, [app.config.config.api_host, security.admin_host, ...security.allowed_hosts])
  /** Methods registered per URL, for the Allow header of a refused HEAD. */
  const methodsByUrl = new Map<string, Set<string>>()

  app.log.info({
    admin: token ? 'bearer token' : 'loopback only (no admin_token configured)',
    readRequiresToken: security.read_requires_token,
    guestNetworks: security.guest_networks,
    adminListener: split ? `${security.admin_host ?? '127.0.0.1'}:${security.admin_port}` : null
  }, 'access control')
  if (token === null && (isGuestNetwork('127.0.0.1') || isGuestNetwork('::1'))) {
    // QEMU user networking makes a guest's requests come from loopback: such a guest could then
    // call admin endpoints too. Harmless on libvirt's NAT network (guests come from 192.168.122.x).
    app.log.warn('loopback is both a guest network and the admin network (no admin_token): a guest on QEMU user networking could call admin endpoints; set security.admin_token, or remove loopback from security.guest_networks')
  }

  // QEMU user networking while loopback is not a guest network: the guest is taken for the host.
  // Looked at once when the app is ready, in the background: never delays or blocks the start.
  app.addHook('onReady', async () => {
    const loopbackIsGuest = isGuestNetwork('127.0.0.1')
    if (loopbackIsGuest) return
    // Not awaited: a slow libvirt must not hold the start; each VM's failure is caught.
    Promise.all(app.config.vms.map(async (vm) => {
      try {
        const problem = userNetworkingProblem(vm.name, await app.hypervisor.domainXml(vm.name), loopbackIsGuest, token !== null)
        if (problem !== null) app.log.error({ vm: vm.name, guestNetworks: security.guest_networks }, problem)
      } catch {
        // libvirt not reachable or no such domain yet: the doctor's guest_network check tells.
      }
    }))
  })

  // Before the rate limiter's own onRoute hook: guest routes are limited here (per VM, after
  // the body is parsed), not by it.
  app.addHook('onRoute', (route) => {
    if (route.config?.access === 'guest') route.config.rateLimit = false
  })
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    timeWindow: 60_000,
    max: (request) => limits[accessOf(request)],
    keyGenerator: (request) => `${accessOf(request)}|${normalizeAddress(request.socket.remoteAddress ?? '')}`,
    errorResponseBuilder: (request, context) => new AppError('RATE_LIMITED',
      `Too many requests from this address: at most ${context.max} a minute for ${accessOf(request)} endpoints; retry in ${context.after}`)
  })
  app.decorateRequest('overLimit', null)
  app.decorateRequest('requester', null)

  function hasValidToken (request: FastifyRequest): boolean | null {
    const presented = bearerToken(request.headers.authorization)
    if (presented === null) return null
    return token !== null && tokenMatches(presented, token)
  }

  /** Admin rules; 'network' when only the address admitted the request (loopback, no token configured). */
  function requireAdmin (request: FastifyRequest, reply: FastifyReply, address: string): Grant {
    if (token === null) {
      if (isLoopback(address)) return 'network'
      throw new AppError('FORBIDDEN', 'Admin endpoints answer only loopback while no admin token is configured: set security.admin_token (or security.admin_token_file) in config.yaml')
    }
    const valid = hasValidToken(request)
    if (valid === true) return 'credential'
    // A dashboard login (plugins/session.ts) stands for the token; a wrong Bearer beside it still fails.
    if (valid === null && app.hasDecorator('sessions') && app.sessions.admits(request)) return 'credential'
    reply.header('www-authenticate', 'Bearer realm="kiosk-vm-watchdog"')
    throw new AppError('UNAUTHORIZED', valid === null
      ? 'This endpoint needs the admin token: send "Authorization: Bearer <token>"'
      : 'The admin token is not valid')
  }

  async function checkAccess (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const grant = decideAccess(request, reply)
    if (grant === 'credential' || grant === 'public') return
    const refused = refusedHost(request.headers.host, hostNames)
    if (refused === null) return
    // Open read routes: a token or a dashboard login present proves this is no rebound page.
    if (grant === 'open' && (hasValidToken(request) === true || (app.hasDecorator('sessions') && app.sessions.admits(request)))) return
    refuseHost(request, refused)
  }

  function refuseHost (request: FastifyRequest, refused: string): never {
    const address = normalizeAddress(request.socket.remoteAddress ?? '')
    const liveness = request.routeOptions.config.liveness === true
    const { count, resetAt } = hostRefusals.hit(address)
    if (count === 1) {
      // Once a minute per address: a technician must learn why a guest's heartbeats are not counted.
      request.log.warn({ address, host: refused, route: request.routeOptions.url }, `${liveness ? 'heartbeat' : 'request'} refused: Host "${refused}" is not a name of this service (add it to security.allowed_hosts if it is; further refusals from this address this minute are not logged at warn)`)
    }
    if (count > limits.guest) {
      throw new AppError('RATE_LIMITED', `Too many refused requests from ${address || 'this client'}: at most ${limits.guest} a minute; retry in ${retryAfter(resetAt)} s`)
    }
    throw new AppError('HOST_NOT_ALLOWED', `The Host header names "${refused}", which is not a name of this service: a request trusted for where it comes from must name the service by an IP address, localhost, this machine's name (${machine}) or a name in security.allowed_hosts${liveness ? '; the heartbeat was not counted' : ''}. If "${refused}" is this host, add it to security.allowed_hosts in config.yaml`)
  }

  /**
   * Refuses what the request may not do; says what admitted it: a credential (the token, a
   * dashboard login), the network alone (its address), or an open read route.
   */
  function decideAccess (request: FastifyRequest, reply: FastifyReply): Grant {
    const access = accessOf(request)
    const onAdminListener = split && adminSockets.has(request.raw.socket)
    if (split && access === 'admin' && !onAdminListener) {
      throw new AppError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`)
    }
    const address = normalizeAddress(request.socket.remoteAddress ?? '')
    // A guest network's request to a guest route is the guest's whatever sent it (an exhibit's
    // own page too). Loopback is the host's browser as well, so it stays checked.
    const fromGuestSource = access === 'guest' && !onAdminListener && isGuestNetwork(address) && !isLoopback(address)
    if (access !== 'read' && !fromGuestSource) {
      // Admin and guest routes act, GET included (EVC's paths): a page on another site must not
      // make a browser on this host run them (loopback is admin without a token).
      const crossSite = crossSiteReason(request.headers)
      if (crossSite !== null) {
        throw new AppError('CROSS_SITE_REQUEST', `${access === 'admin' ? 'Admin' : 'Guest'} endpoints refuse requests a browser sends from another site (${crossSite}); open the dashboard from this service, or call without a browser`)
      }
    }
    if (access === 'guest') {
      if (onAdminListener) {
        // The admin listener is the technicians' own door: admin rules, a technician's request.
        const grant = requireAdmin(request, reply, address)
        request.requester = 'technician'
        return grant
      }
      const fromGuestNetwork = isGuestNetwork(address)
      if (bearerToken(request.headers.authorization) !== null) {
        const { count, resetAt } = tokenTries.hit(address)
        if (count <= limits.admin && hasValidToken(request) === true) {
          request.requester = 'technician'
          return 'credential'
        }
        // Over the limit a guest network's request is still the guest's (its heartbeat is never
        // refused for a header), and the token is not even compared: no guessing from there.
        if (count > limits.admin && !fromGuestNetwork) {
          throw new AppError('RATE_LIMITED', `Too many requests with a token from this address: at most ${limits.admin} a minute; retry in ${retryAfter(resetAt)} s`)
        }
      }
      if (fromGuestNetwork) {
        request.requester = 'guest'
        return 'network'
      }
      if (isLoopback(address)) {
        // Loopback that is not a guest network is the host itself: the admin network while no
        // token is configured. With a token, only the liveness signal is taken from it without
        // one (the quick start's curl heartbeats); an action needs the token.
        if (token === null || request.routeOptions.config.liveness === true) {
          request.requester = 'technician'
          return 'network'
        }
        let grant: Grant
        try {
          grant = requireAdmin(request, reply, address) // the token (checked above) or a dashboard login
        } catch (err) {
          if (err instanceof AppError && err.code === 'UNAUTHORIZED') {
            throw new AppError('UNAUTHORIZED', `${address} is not in security.guest_networks, so this request is a technician's, and an admin token is configured: send "Authorization: Bearer <token>" (or list loopback in security.guest_networks for a guest on QEMU user networking)`)
          }
          throw err
        }
        request.requester = 'technician'
        return grant
      }
      // Refusals are limited too (per address): a flood from outside costs a 429 logged at debug,
      // not an info line per request.
      const refused = guestWindows.hit(`refused|${address}`)
      if (refused.count > limits.guest) {
        throw new AppError('RATE_LIMITED', `Too many refused requests from ${address || 'this client'}: at most ${limits.guest} a minute; retry in ${retryAfter(refused.resetAt)} s`)
      }
      throw new AppError('FORBIDDEN', `Guest endpoints answer only the guest networks (security.guest_networks); ${address || 'this client'} is not in them`)
    }
    if (access === 'read' && request.routeOptions.config.alwaysOpen === true) return 'public' // no data: the login page and the dashboard's files
    if (access === 'read' && !security.read_requires_token) return 'open'
    return requireAdmin(request, reply, address)
  }

  function retryAfter (resetAt: number): number {
    return Math.max(1, Math.ceil((resetAt - now()) / 1000))
  }

  /**
   * The VM a guest request counts against: the path's or the `vm` field's (when it names a
   * watched VM), else the VM mapped to the source address, else the default VM. An unknown name
   * counts as "?" (the route refuses it), so made-up names cannot mint fresh budgets.
   */
  function limitIdentity (request: FastifyRequest, address: string): string {
    const fromParams = (request.params as { vm?: unknown } | undefined)?.vm
    const fromBody = (request.body as { vm?: unknown } | null | undefined)?.vm
    const fromQuery = (request.query as { vm?: unknown } | undefined)?.vm
    const named = [fromParams, fromBody, fromQuery].find((v) => v !== undefined && v !== null)
    if (named !== undefined) return typeof named === 'string' && app.vms.has(named) ? named : '?'
    return app.vmsByAddress.get(address)?.name ?? app.defaultVm
  }

  /**
   * preHandler of guest routes: counts the request per (kind, VM, address). A technician's
   * request counts against the admin budget instead (never the guest one).
   */
  async function guestLimit (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const liveness = request.routeOptions.config.liveness === true
    const address = normalizeAddress(request.socket.remoteAddress ?? '')
    const vm = limitIdentity(request, address)
    const technician = request.requester === 'technician'
    const kind = `${liveness ? 'heartbeat' : 'guest'}${technician ? '-technician' : ''}`
    const { count, resetAt } = guestWindows.hit(`${kind}|${vm}|${address}`)
    const max = technician && !liveness ? limits.admin : limits.guest
    if (count <= max) return undefined
    const over: OverLimit = { vm, address, max, retryAfterSeconds: retryAfter(resetAt) }
    if (count === max + 1) {
      request.log.warn({ vm, address, route: request.routeOptions.url, max }, liveness
        ? 'heartbeats over the guest rate limit: still counted, answered 429 until the window resets (further ones not logged)'
        : 'guest requests over the guest rate limit: answered 429 until the window resets (further ones not logged)')
    }
    if (liveness) {
      request.overLimit = over
      return undefined
    }
    return rateLimitedReply(reply, over, `Too many requests from ${address || 'this client'} for VM "${vm}": at most ${max} a minute for ${technician ? 'a technician\'s revert requests' : 'guest endpoints'}; retry in ${over.retryAfterSeconds} s`)
  }

  /**
   * Wraps the handler of a HEAD route: on an action route (anything but read, decided per
   * request: plugins such as the dashboard set `access` after this hook has seen the route) it
   * answers 405 and never runs the action; elsewhere it is the handler as it was.
   */
  function refuseHeadOnActions (url: string, handler: RouteHandlerMethod): RouteHandlerMethod {
    return function (this: FastifyInstance, request, reply) {
      if (accessOf(request) === 'read') return handler.call(this, request, reply)
      const allowed = [...(methodsByUrl.get(url) ?? [])].filter((m) => m !== 'HEAD')
      if (allowed.length > 0) reply.header('allow', allowed.join(', '))
      throw new AppError('METHOD_NOT_ALLOWED', `HEAD never runs an action: use ${allowed.join(' or ') || 'another method'}`)
    }
  }

  // Added per route, after the rate limiter's hook (registered above), so limits apply first.
  app.addHook('onRoute', (route) => {
    const access = route.config?.access
    if (access !== undefined && !(ACCESS_LEVELS as readonly string[]).includes(access)) {
      throw new Error(`route ${route.method} ${route.url}: config.access must be one of ${ACCESS_LEVELS.join(', ')} (got ${String(access)})`)
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const known = methodsByUrl.get(route.url) ?? new Set<string>()
    for (const m of methods) known.add(m)
    methodsByUrl.set(route.url, known)
    // Fastify adds HEAD for every GET route; on an action that would run it.
    if (methods.includes('HEAD')) route.handler = refuseHeadOnActions(route.url, route.handler)
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [...existing, checkAccess]
    if (access === 'guest' && !methods.includes('HEAD')) {
      const pre = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler]
      route.preHandler = [...pre, guestLimit]
    }
  })

  let adminServer: Server | null = null
  app.decorate('listenAdmin', async (options: { host?: string, port?: number } = {}): Promise<AddressInfo> => {
    const host = options.host ?? security.admin_host ?? '127.0.0.1'
    const port = options.port ?? security.admin_port
    if (port === undefined) throw new Error('listenAdmin: security.admin_port is not set')
    if (!split) throw new Error('listenAdmin: the admin listener needs security.admin_port in the configuration when the app is built')
    if (adminServer !== null) throw new Error('listenAdmin: already listening')
    await app.ready()
    const server = createServer((req, res) => app.routing(req, res))
    server.on('connection', (socket) => adminSockets.add(socket))
    adminServer = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port }, () => { server.off('error', reject); resolve() })
    })
    const address = server.address() as AddressInfo
    app.log.info({ address: address.address, port: address.port }, 'admin listener started')
    return address
  })
  app.addHook('preClose', async () => {
    const server = adminServer
    if (server === null) return
    adminServer = null
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
      // Streams (the dashboard's SSE) never go idle; the app is closing, so end them.
      setTimeout(() => server.closeAllConnections(), 1000).unref()
    })
  })
}, { name: 'security', fastify: '5.x', dependencies: ['errors'] })
