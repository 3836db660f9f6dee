// OpenAPI 3 document of the API, generated from the routes' zod schemas, with Swagger UI at
// /docs (the document itself at /docs/json). EVC's (FastAPI's) paths answer too: /openapi.json
// is the same document, /redoc redirects to /docs (no ReDoc bundled: nothing from a CDN). Must be registered before the routes: @fastify/swagger
// collects them as they are added. Each operation states who may call it (x-access, and the
// bearer security requirement for admin ones).
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod'
import { VERSION } from '../version.ts'

type Transform = typeof jsonSchemaTransform

export const accessTransform: Transform = (input) => {
  const out = jsonSchemaTransform(input)
  const access = input.route.config?.access ?? 'admin'
  const needsToken = access === 'admin'
  const schema = { ...out.schema, 'x-access': access, ...(needsToken ? { security: [{ adminToken: [] }] } : {}) }
  return { ...out, schema }
}

export default fp(async function docsPlugin (app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'kiosk-vm-watchdog API',
        version: VERSION,
        description: 'Keeps museum kiosk VMs alive: the guest sends a heartbeat every second; when heartbeats stop, ' +
          'the VM dies or the guest asks, the VM is reverted to its snapshot. x-access on each operation: guest (from ' +
          'security.guest_networks), admin (Bearer token when one is configured, else loopback only), read (open unless ' +
          'security.read_requires_token).'
      },
      components: {
        securitySchemes: {
          adminToken: { type: 'http', scheme: 'bearer', description: 'security.admin_token from config.yaml' }
        }
      }
    },
    transform: accessTransform,
    transformObject: jsonSchemaTransformObject
  })
  // Its own scope, so the 'read' marker lands on the UI's routes only.
  await app.register(async (ui) => {
    ui.addHook('onRoute', (route) => { route.config = { ...route.config, access: 'read' } })
    await ui.register(swaggerUi, { routePrefix: '/docs', staticCSP: true })
    ui.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
    ui.get('/redoc', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/docs', 302))
  })
}, { name: 'docs', fastify: '5.x', dependencies: ['security'] })
