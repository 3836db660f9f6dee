// What the guest calls: heartbeats and revert requests. GET and POST alike (AutoIt's InetGet
// can only GET); fields come from the query string, or from a JSON body on POST. Rate limits
// (src/plugins/security.ts) never cost a heartbeat: one over the limit is counted, then answered 429.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { ackSchema, actionRoute, errorResponses, reasonField, vmField } from './schemas.ts'
import { normalizeAddress } from '../net/addresses.ts'
import { rateLimitedReply } from '../plugins/security.ts'
import { resolveVm } from './vm-context.ts'

export const heartbeatFields = z.object({
  seq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().describe('The guest\'s heartbeat counter (goes back after a revert).'),
  status: z.string().max(200).optional().describe('Free text from the guest, e.g. "ok".'),
  vm: vmField
})

export const revertRequestFields = z.object({
  reason: reasonField.describe('Why the guest asks, e.g. "idle", "process_missing".'),
  vm: vmField
})

const BOTH = ['GET', 'POST'] as const

const guestRoutes: FastifyPluginAsyncZod = async (app) => {
  actionRoute(app, {
    methods: BOTH,
    url: '/heartbeat',
    access: 'guest',
    liveness: true,
    summary: 'Heartbeat from the guest (about once a second); over the guest rate limit still counted, answered 429',
    fields: heartbeatFields,
    response: { 200: ackSchema, ...errorResponses(400, 403, 404, 429) },
    handler: async (fields, request, reply) => {
      const vm = resolveVm(app, request, fields.vm)
      // Counted first: a heartbeat that arrived proves the guest alive, whatever the limit says.
      vm.watchdog.heartbeat({ seq: fields.seq, status: fields.status, source: normalizeAddress(request.socket.remoteAddress ?? '') })
      const over = request.overLimit
      if (over !== null) {
        return rateLimitedReply(reply, over, `Heartbeat counted, but too many from ${over.address || 'this client'} for VM "${vm.name}": at most ${over.max} a minute; retry in ${over.retryAfterSeconds} s`, { counted: true })
      }
      return { message: 'Heartbeat received', details: { vm: vm.name, seq: fields.seq ?? null, state: vm.watchdog.view().state } }
    }
  })

  for (const [url, defaultReason, summary] of [
    ['/revert/request', 'guest_request', 'The guest asks for a revert, with a reason'],
    ['/vm/restart', 'guest_restart_request', 'Revert (exhibition-vm-controller\'s name, called by its guest scripts)']
  ] as const) {
    actionRoute(app, {
      methods: BOTH,
      url,
      access: 'guest',
      summary,
      fields: revertRequestFields,
      response: { 202: ackSchema, ...errorResponses(400, 403, 404, 409, 429) },
      handler: async (fields, request, reply) => {
        const vm = resolveVm(app, request, fields.vm)
        const reason = fields.reason?.trim() || defaultReason
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

export default guestRoutes
