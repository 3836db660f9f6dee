// What technicians (and the dashboard) do to a VM: revert now, start, stop, maintenance on/off,
// clear "exhausted". EVC's paths answer GET too, as EVC did (technicians open them in a browser).
// Every action goes to the VM's watchdog, which runs libvirt actions through its one queue.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { errorResponses } from './schemas.ts'
import { resolveVm } from './vm-context.ts'

const ackSchema = z.object({ message: z.string(), details: z.record(z.string(), z.unknown()) })
const vmQuery = z.object({ vm: z.string().max(64).optional() })
const reasonQuery = vmQuery.extend({ reason: z.string().max(200).regex(/^[\w .:,/-]*$/, 'letters, digits, spaces and _ . : , / - only').optional() })
const disableQuery = vmQuery.extend({
  minutes: z.coerce.number().positive().max(60 * 24 * 365).optional().describe('How long auto-revert stays off (default: maintenance_minutes from config).'),
  indefinite: z.enum(['true', 'false', '1', '0']).optional().describe('true: until switched back on.')
})
const refusals = errorResponses(400, 401, 403, 404, 409, 429, 503)

const technicianRoutes: FastifyPluginAsyncZod = async (app) => {
  const both = ['GET', 'POST'] as const

  app.route({
    method: 'POST',
    url: '/revert',
    config: { access: 'admin' },
    schema: { summary: 'Revert the VM to its snapshot now (a technician\'s revert: allowed in maintenance, clears exhausted)', querystring: reasonQuery, response: { 202: ackSchema, ...refusals } },
    handler: async (request, reply) => {
      const vm = resolveVm(app, request, request.query.vm)
      const reason = request.query.reason?.trim() || 'technician'
      const result = vm.watchdog.requestRevert(reason, 'technician')
      return reply.code(202).send({ message: result.outcome === 'started' ? 'Revert started' : 'A revert is already under way', details: { vm: vm.name, reason, outcome: result.outcome } })
    }
  })

  app.route({
    method: [...both],
    url: '/vm/start',
    config: { access: 'admin' },
    schema: { summary: 'Clear a manual stop and bring the VM up (revert to the snapshot)', querystring: vmQuery, response: { 202: ackSchema, ...refusals } },
    handler: async (request, reply) => {
      const vm = resolveVm(app, request, request.query.vm)
      vm.watchdog.startVm()
      return reply.code(202).send({ message: 'Starting the VM', details: { vm: vm.name } })
    }
  })

  app.route({
    method: [...both],
    url: '/vm/stop',
    config: { access: 'admin' },
    schema: { summary: 'Stop the VM on purpose: the watchdog will not bring it back until /vm/start', querystring: vmQuery, response: { 202: ackSchema, ...refusals } },
    handler: async (request, reply) => {
      const vm = resolveVm(app, request, request.query.vm)
      vm.watchdog.stopVm()
      return reply.code(202).send({ message: 'Stopping the VM; auto-revert is off until /vm/start', details: { vm: vm.name } })
    }
  })

  app.route({
    method: [...both],
    url: '/revert/enable',
    config: { access: 'admin' },
    schema: { summary: 'End maintenance: automatic reverts on again', querystring: vmQuery, response: { 200: ackSchema, ...refusals } },
    handler: async (request) => {
      const vm = resolveVm(app, request, request.query.vm)
      vm.watchdog.clearMaintenance()
      return { message: 'Auto-revert enabled', details: { vm: vm.name, auto_revert_enabled: true } }
    }
  })

  app.route({
    method: [...both],
    url: '/revert/disable',
    config: { access: 'admin' },
    schema: { summary: 'Maintenance: automatic reverts off for a while (expires on its own)', querystring: disableQuery, response: { 200: ackSchema, ...refusals } },
    handler: async (request) => {
      const vm = resolveVm(app, request, request.query.vm)
      const indefinite = request.query.indefinite === 'true' || request.query.indefinite === '1'
      const minutes = indefinite ? null : (request.query.minutes ?? app.config.config.maintenance_minutes)
      vm.watchdog.setMaintenance(minutes, 'technician')
      // The watchdog's own `until` (read once, rounded to the ms), so the answer matches /status.
      const untilMs = vm.watchdog.view().maintenance?.until ?? null
      const until = untilMs === null ? null : new Date(untilMs).toISOString()
      return { message: until ? `Auto-revert disabled until ${until}` : 'Auto-revert disabled until enabled again', details: { vm: vm.name, auto_revert_enabled: false, until } }
    }
  })

  app.route({
    method: 'POST',
    url: '/watchdog/reset',
    config: { access: 'admin' },
    schema: { summary: 'Clear "exhausted" after fixing the cause: the watchdog watches (and reverts) again', querystring: vmQuery, response: { 200: ackSchema, ...refusals } },
    handler: async (request) => {
      const vm = resolveVm(app, request, request.query.vm)
      vm.watchdog.reset()
      return { message: 'Watchdog reset', details: { vm: vm.name, state: vm.watchdog.view().state } }
    }
  })
}

export default technicianRoutes
