// /api/v1/session: the dashboard's login with the admin token (see src/plugins/session.ts).
//   GET    what the dashboard needs to decide whether to show the login page
//   POST   {token}: a session cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS)
//   DELETE logout: the session ends on the server and the cookie is cleared
// All three answer with read_requires_token too (`alwaysOpen`): they are how a browser gets in.
// POST and DELETE refuse cross-site browser requests as actions do (no login CSRF, no forced
// logout), and login attempts are rate limited per address and in total.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { crossSiteReason } from '../plugins/security.ts'
import { clientAddress, cookieValue, overTls, SESSION_COOKIE, SESSION_TTL_MS, sessionCookie } from '../plugins/session.ts'
import { ackSchema, errorResponses } from './schemas.ts'

const sessionView = z.object({
  read_requires_token: z.boolean().describe('Reads (status, events, the live view) need the admin token or a login'),
  login_available: z.boolean().describe('An admin token is configured, so a login is possible (else admin is loopback only)'),
  logged_in: z.boolean().describe('This request carries a live session cookie'),
  expires_at: z.string().nullable().describe('When the session ends (it is not extended by use)')
})

const sessionRoutes: FastifyPluginAsyncZod = async (app) => {
  const config = { access: 'read' as const, alwaysOpen: true }
  const refuseCrossSite = (headers: Parameters<typeof crossSiteReason>[0], what: string): void => {
    const crossSite = crossSiteReason(headers)
    if (crossSite !== null) throw new AppError('CROSS_SITE_REQUEST', `${what} refuses requests a browser sends from another site (${crossSite}); open the dashboard from this service`)
  }

  app.get('/session', {
    config,
    schema: { summary: 'The dashboard\'s login state (open to anyone)', response: { 200: sessionView, ...errorResponses(429) } }
  }, async (request) => {
    const expiresAt = app.sessions.of(request)
    return {
      read_requires_token: app.config.config.security.read_requires_token,
      login_available: (app.config.config.security.admin_token ?? null) !== null,
      logged_in: expiresAt !== null,
      expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString()
    }
  })

  app.post('/session', {
    config,
    schema: {
      summary: 'Log in with the admin token: sets the session cookie the dashboard uses instead of the Authorization header',
      body: z.object({ token: z.string().min(1).max(1024).describe('security.admin_token') }),
      response: { 200: ackSchema, ...errorResponses(400, 401, 403, 409, 429) }
    }
  }, async (request, reply) => {
    refuseCrossSite(request.headers, 'Login')
    const result = app.sessions.login(request.body.token, clientAddress(request))
    if (!result.ok) {
      if (result.reason === 'rate_limited') {
        reply.header('retry-after', String(result.retryAfterSeconds))
        throw new AppError('RATE_LIMITED', `Too many login attempts; retry in ${result.retryAfterSeconds} s`)
      }
      if (result.reason === 'no_token') {
        throw new AppError('CONFLICT', 'No admin token is configured, so there is nothing to log in with: admin endpoints answer loopback only. Set security.admin_token (or security.admin_token_file) to use the login')
      }
      request.log.info({ address: clientAddress(request) }, 'login refused: wrong admin token')
      throw new AppError('UNAUTHORIZED', 'The admin token is not valid')
    }
    reply.header('set-cookie', sessionCookie(result.id, Math.floor(SESSION_TTL_MS / 1000), overTls(request)))
    reply.header('cache-control', 'no-store')
    const expiresAt = new Date(result.expiresAt).toISOString()
    request.log.info({ address: clientAddress(request), expiresAt }, 'dashboard login')
    return { message: `Logged in until ${expiresAt}`, details: { expires_at: expiresAt } }
  })

  app.delete('/session', {
    config,
    schema: { summary: 'Log out: ends the session and clears its cookie', response: { 200: ackSchema, ...errorResponses(403, 429) } }
  }, async (request, reply) => {
    refuseCrossSite(request.headers, 'Logout')
    const hadSession = app.sessions.of(request) !== null
    app.sessions.end(cookieValue(request.headers.cookie, SESSION_COOKIE))
    reply.header('set-cookie', sessionCookie('', 0, overTls(request)))
    return { message: hadSession ? 'Logged out' : 'There was no session', details: { logged_out: hadSession } }
  })
}

export default sessionRoutes
