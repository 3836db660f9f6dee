// The technicians' dashboard: static files from public/ at /ui/ (as exhibition-vm-controller
// had it), no framework, no CDN, a strict Content-Security-Policy. GET / sends a browser to
// /ui/ and answers other clients with a short JSON pointer (EVC's `web_ui` field).
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { VERSION } from '../version.ts'

/** public/ at the repository root: two levels up from src/plugins/ and from dist/plugins/. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

export default fp(async function dashboardPlugin (app: FastifyInstance, options: { root?: string }) {
  await app.register(async (ui) => {
    ui.addHook('onRoute', (route) => { route.config = { ...route.config, access: 'read' } })
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
    ui.get('/', { schema: { summary: 'Service pointer; browsers are redirected to the dashboard at /ui/' } }, async (request, reply) => {
      if ((request.headers.accept ?? '').includes('text/html')) return reply.redirect('/ui/', 302)
      return { service: 'kiosk-vm-watchdog', version: VERSION, status: '/api/v1/status', docs: '/docs', web_ui: '/ui/' }
    })
  })
}, { name: 'dashboard', fastify: '5.x', dependencies: ['security'] })
