// GET /api/v1/events: the audit trail, newest first.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { StoreError } from '../store/index.ts'
import { errorResponses } from './schemas.ts'

const eventsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  vm: z.string().max(64).optional(),
  kind: z.string().max(64).regex(/^[a-z_]+$/).optional()
})

const eventsRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/events', {
    config: { access: 'read' },
    schema: {
      summary: 'Audit trail: reverts, timeouts, requests, technician actions (newest first)',
      querystring: eventsQuery,
      response: { 200: z.object({ events: z.array(z.record(z.string(), z.unknown())) }), ...errorResponses(400, 401, 403, 429, 503) }
    }
  }, async (request) => {
    const vm = (request.params as { vm?: string }).vm ?? request.query.vm
    let events
    try {
      events = await app.audit.read({ limit: request.query.limit, vm, kind: request.query.kind })
    } catch (err) {
      // The disk's problem, not an internal error: a 503 that says the trail cannot be read.
      if (err instanceof StoreError) throw new AppError('AUDIT_UNREADABLE', err.message, { path: err.path }, { cause: err })
      throw err
    }
    return { events: events as Record<string, unknown>[] }
  })
}

export default eventsRoutes
