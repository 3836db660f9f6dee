// The technicians' dashboard: static files from public/ at /ui/ (as exhibition-vm-controller
// had it), no framework, no CDN, a strict Content-Security-Policy. GET / sends a browser to
// /ui/ and answers other clients with a short JSON pointer (EVC's `web_ui` field).
import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { APP_ROOT, VERSION } from '../version.ts'

/** public/ beside package.json (the checkout or the installed tree). */
export const PUBLIC_DIR = join(APP_ROOT, 'public')

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

export default fp(async function dashboardPlugin (app: FastifyInstance, options: { root?: string }) {
  await app.register(async (ui) => {
    // The page and its files hold no data (every figure comes from the API), so they are served
    // even with read_requires_token: that is how a browser reaches the login. Not `/` (version).
    ui.addHook('onRoute', (route) => { route.config = { ...route.config, access: 'read', alwaysOpen: route.url !== '/' } })
    await ui.register(fastifyStatic, {
      root: options.root ?? PUBLIC_DIR,
      prefix: '/ui/',
      index: false,
      cacheControl: false,
      setHeaders (reply) {
        reply.header('content-security-policy', CSP)
        reply.header('x-content-type-options', 'nosniff')
        reply.header('referrer-policy', 'no-referrer')
        reply.header('cache-control', 'no-cache')
      }
    })
    // The app ignores trailing slashes, so /ui and /ui/ are one route here.
    ui.get('/ui/', { schema: { hide: true } }, async (_request, reply) => reply.sendFile('index.html'))
    ui.get('/ui/login', { schema: { hide: true } }, async (_request, reply) => reply.sendFile('login.html'))
    ui.get('/', { schema: { summary: 'Service pointer; browsers are redirected to the dashboard at /ui/' } }, async (request, reply) => {
      if ((request.headers.accept ?? '').includes('text/html')) return reply.redirect('/ui/', 302)
      // EVC's envelope (message, details.version) beside the fields this service always had.
      return {
        message: 'kiosk-vm-watchdog API (compatible with exhibition-vm-controller)',
        details: { version: VERSION, docs: '/docs', openapi: '/openapi.json', status: '/api/v1/status', web_ui: '/ui/' },
        service: 'kiosk-vm-watchdog',
        version: VERSION,
        status: '/api/v1/status',
        docs: '/docs',
        web_ui: '/ui/'
      }
    })
  })
}, { name: 'dashboard', fastify: '5.x', dependencies: ['security'] })
