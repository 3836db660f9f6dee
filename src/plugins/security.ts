// Who may call what. Each route says it in its config: `access: 'guest' | 'admin' | 'read'`
// (none = 'admin', the safe default).
//   guest: heartbeat and revert request, from `security.guest_networks` only (or with the admin token).
//   admin: everything that changes state; `Authorization: Bearer <admin_token>` when a token is
//          configured, else loopback only.
//   read:  status, events, metrics, dashboard, docs; anyone who reaches the port, unless
//          `read_requires_token` makes it admin-like.
// Addresses come from the socket (request.socket.remoteAddress): no proxy headers are trusted.
// Rate limits (@fastify/rate-limit) count per client address and access class, and run before
// the access check, so guessing the token is rate limited too.
// With `security.admin_port`, admin endpoints move to a second listener (app.listenAdmin) and the
// main listener answers them 404; guest endpoints answer 404 on the admin listener.
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { BlockList, isIPv6, type AddressInfo, type Socket } from 'node:net'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from '../errors.ts'

export const ACCESS_LEVELS = ['guest', 'admin', 'read'] as const
export type Access = typeof ACCESS_LEVELS[number]

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (default 'admin'); enforced by the security plugin. */
    access?: Access
  }
  interface FastifyInstance {
    /**
     * Starts the admin listener (security.admin_host/admin_port unless given). It serves the
     * same app; only admin and read endpoints answer there. Closed with the app.
     */
    listenAdmin (options?: { host?: string, port?: number }): Promise<AddressInfo>
  }
}

/** "::ffff:10.0.2.15" and "10.0.2.15" are the same client. */
export function normalizeAddress (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** A set of addresses and CIDR networks (validated by the config schema). */
export function networkList (entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList()
  for (const entry of entries) {
    const [address, prefix] = entry.split('/') as [string, string | undefined]
    const family = isIPv6(address) ? 'ipv6' : 'ipv4'
    if (prefix === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(prefix), family)
  }
  return (address) => {
    const a = normalizeAddress(address)
    if (a === '') return false
    try {
      return list.check(a, isIPv6(a) ? 'ipv6' : 'ipv4')
    } catch {
      return false // not an IP address at all
    }
  }
}

const isLoopback = networkList(['127.0.0.0/8', '::1'])

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

  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    timeWindow: 60_000,
    max: (request) => limits[accessOf(request)],
    keyGenerator: (request) => `${accessOf(request)}|${normalizeAddress(request.socket.remoteAddress ?? '')}`,
    errorResponseBuilder: (request, context) => new AppError('RATE_LIMITED',
      `Too many requests from this address: at most ${context.max} a minute for ${accessOf(request)} endpoints; retry in ${context.after}`)
  })

  function hasValidToken (request: FastifyRequest): boolean | null {
    const presented = bearerToken(request.headers.authorization)
    if (presented === null) return null
    return token !== null && tokenMatches(presented, token)
  }

  function requireAdmin (request: FastifyRequest, reply: FastifyReply, address: string): void {
    if (token === null) {
      if (isLoopback(address)) return
      throw new AppError('FORBIDDEN', 'Admin endpoints answer only loopback while no admin token is configured: set security.admin_token (or security.admin_token_file) in config.yaml')
    }
    const valid = hasValidToken(request)
    if (valid === true) return
    reply.header('www-authenticate', 'Bearer realm="kiosk-vm-watchdog"')
    throw new AppError('UNAUTHORIZED', valid === null
      ? 'This endpoint needs the admin token: send "Authorization: Bearer <token>"'
      : 'The admin token is not valid')
  }

  async function checkAccess (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const access = accessOf(request)
    if (split) {
      const onAdminListener = adminSockets.has(request.raw.socket)
      if ((access === 'admin' && !onAdminListener) || (access === 'guest' && onAdminListener)) {
        throw new AppError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`)
      }
    }
    const address = normalizeAddress(request.socket.remoteAddress ?? '')
    if (access === 'guest') {
      if (isGuestNetwork(address)) return
      if (hasValidToken(request) === true) return
      throw new AppError('FORBIDDEN', `Guest endpoints answer only the guest networks (security.guest_networks); ${address || 'this client'} is not in them`)
    }
    if (access === 'read' && !security.read_requires_token) return
    requireAdmin(request, reply, address)
  }

  // Added per route, after the rate limiter's hook (registered above), so limits apply first.
  app.addHook('onRoute', (route) => {
    const access = route.config?.access
    if (access !== undefined && !(ACCESS_LEVELS as readonly string[]).includes(access)) {
      throw new Error(`route ${route.method} ${route.url}: config.access must be one of ${ACCESS_LEVELS.join(', ')} (got ${String(access)})`)
    }
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [...existing, checkAccess]
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
