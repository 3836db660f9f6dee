// What the guest calls: heartbeats and revert requests. GET and POST alike (AutoIt's InetGet
// can only GET); fields come from the query string, or from a JSON body on POST.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { errorResponses } from './schemas.ts'
import { normalizeAddress, resolveVm } from './vm-context.ts'

const optionalText = (max: number) => z.string().max(max).optional()

export const heartbeatFields = z.object({
  seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().describe('The guest\'s heartbeat counter (goes back after a revert).'),
  status: optionalText(200).describe('Free text from the guest, e.g. "ok".'),
  vm: optionalText(64).describe('The VM this heartbeat belongs to (default: by source address, else the default VM).')
})

export const revertRequestFields = z.object({
  reason: z.string().max(200).regex(/^[\w .:,/-]*$/, 'letters, digits, spaces and _ . : , / - only').optional().describe('Why the guest asks, e.g. "idle", "process_missing".'),
  vm: optionalText(64)
})

const ackSchema = z.object({ message: z.string(), details: z.record(z.string(), z.unknown()) })

/** Query fields, overridden by a JSON body when one was sent. */
function fields<T> (request: { query: unknown, body?: unknown }): T {
  const body = request.body !== null && typeof request.body === 'object' ? request.body : {}
  return { ...(request.query as object), ...body } as T
}

const guestRoutes: FastifyPluginAsyncZod = async (app) => {
  for (const method of ['GET', 'POST'] as const) {
    app.route({
      method,
      url: '/heartbeat',
      config: { access: 'guest' },
      schema: {
        summary: 'Heartbeat from the guest (about once a second)',
        querystring: heartbeatFields,
        ...(method === 'POST' ? { body: heartbeatFields.nullish() } : {}),
        response: { 200: ackSchema, ...errorResponses(400, 403, 404, 429) }
      },
      handler: async (request) => {
        const f = fields<z.infer<typeof heartbeatFields>>(request)
        const vm = resolveVm(app, request, f.vm)
        vm.watchdog.heartbeat({ seq: f.seq, status: f.status, source: normalizeAddress(request.socket.remoteAddress ?? '') })
        return { message: 'Heartbeat received', details: { vm: vm.name, seq: f.seq ?? null, state: vm.watchdog.view().state } }
      }
    })

    for (const [url, defaultReason, summary] of [
      ['/revert/request', 'guest_request', 'The guest asks for a revert, with a reason'],
      ['/vm/restart', 'guest_restart_request', 'Revert (exhibition-vm-controller\'s name, called by its guest scripts)']
    ] as const) {
      app.route({
        method,
        url,
        config: { access: 'guest' },
        schema: {
          summary,
          querystring: revertRequestFields,
          ...(method === 'POST' ? { body: revertRequestFields.nullish() } : {}),
          response: { 202: ackSchema, ...errorResponses(400, 403, 404, 409, 429) }
        },
        handler: async (request, reply) => {
          const f = fields<z.infer<typeof revertRequestFields>>(request)
          const vm = resolveVm(app, request, f.vm)
          const reason = f.reason?.trim() || defaultReason
          const result = vm.watchdog.requestRevert(reason, 'guest')
          if (result.outcome === 'refused') throw new AppError('CONFLICT', `Revert not started: ${result.why ?? 'refused'}`, { vm: vm.name, reason })
          return reply.code(202).send({
            message: result.outcome === 'started' ? 'Revert started' : 'A revert is already under way',
            details: { vm: vm.name, reason, outcome: result.outcome }
          })
        }
      })
    }
  }
}

export default guestRoutes
