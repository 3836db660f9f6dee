// What technicians (and the dashboard) do to a VM: revert now, start, stop, maintenance on/off,
// clear "exhausted". EVC's paths answer GET too, as EVC did (technicians open them in a browser).
// Every action goes to the VM's watchdog, which runs libvirt actions through its one queue.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { MAINTENANCE_MAX_MINUTES } from '../limits.ts'
import { ackSchema, actionRoute, errorResponses, flagField, reasonField, vmField } from './schemas.ts'
import { resolveVm } from './vm-context.ts'

const vmFields = z.object({ vm: vmField })
const revertFields = vmFields.extend({ reason: reasonField.describe('Recorded in the audit trail (default: technician).') })
const disableFields = vmFields.extend({
  minutes: z.coerce.number().positive().max(MAINTENANCE_MAX_MINUTES).optional().describe('How long auto-revert stays off (default: maintenance_minutes from config).'),
  indefinite: flagField.describe('true: until switched back on.')
})
const refusals = errorResponses(400, 401, 403, 404, 409, 429, 503)
const BOTH = ['GET', 'POST'] as const
const POST = ['POST'] as const

const technicianRoutes: FastifyPluginAsyncZod = async (app) => {
  actionRoute(app, {
    methods: POST,
    url: '/revert',
    access: 'admin',
    summary: 'Revert the VM to its snapshot now (a technician\'s revert: allowed in maintenance, clears exhausted)',
    fields: revertFields,
    response: { 202: ackSchema, ...refusals },
    handler: async (fields, request, reply) => {
      const vm = resolveVm(app, request, fields.vm)
      const reason = fields.reason?.trim() || 'technician'
      const result = vm.watchdog.requestRevert(reason, 'technician')
      return reply.code(202).send({ message: result.outcome === 'started' ? 'Revert started' : 'A revert is already under way', details: { vm: vm.name, reason, outcome: result.outcome } })
    }
  })

  actionRoute(app, {
    methods: BOTH,
    url: '/vm/start',
    access: 'admin',
    summary: 'Clear a manual stop and bring the VM up (revert to the snapshot)',
    fields: vmFields,
    response: { 202: ackSchema, ...refusals },
    handler: async (fields, request, reply) => {
      const vm = resolveVm(app, request, fields.vm)
      const result = await vm.watchdog.startVm()
      return reply.code(202).send({ message: 'Starting the VM', details: { vm: vm.name, outcome: result.outcome } })
    }
  })

  actionRoute(app, {
    methods: BOTH,
    url: '/vm/stop',
    access: 'admin',
    summary: 'Stop the VM on purpose: the watchdog will not bring it back until /vm/start',
    fields: vmFields,
    response: { 202: ackSchema, ...refusals },
    handler: async (fields, request, reply) => {
      const vm = resolveVm(app, request, fields.vm)
      // Resolves after the destroy (its failures are logged); rejects (503) only when the stop
      // could not be saved, and then nothing was done.
      await vm.watchdog.stopVm()
      return reply.code(202).send({ message: 'Stopping the VM; auto-revert is off until /vm/start', details: { vm: vm.name } })
    }
  })

  actionRoute(app, {
    methods: BOTH,
    url: '/revert/enable',
    access: 'admin',
    summary: 'End maintenance: automatic reverts on again',
    fields: vmFields,
    response: { 200: ackSchema, ...refusals },
    handler: async (fields, request) => {
      const vm = resolveVm(app, request, fields.vm)
      await vm.watchdog.clearMaintenance() // 2xx only once saved: else 503 and nothing changed
      return { message: 'Auto-revert enabled', details: { vm: vm.name, auto_revert_enabled: true } }
    }
  })

  actionRoute(app, {
    methods: BOTH,
    url: '/revert/disable',
    access: 'admin',
    summary: 'Maintenance: automatic reverts off for a while (expires on its own)',
    fields: disableFields,
    response: { 200: ackSchema, ...refusals },
    handler: async (fields, request) => {
      const vm = resolveVm(app, request, fields.vm)
      const minutes = fields.indefinite ? null : (fields.minutes ?? app.config.config.maintenance_minutes)
      await vm.watchdog.setMaintenance(minutes, 'technician') // 2xx only once saved: else 503 and nothing changed
      // The watchdog's own `until` (read once, rounded to the ms), so the answer matches /status.
      const untilMs = vm.watchdog.view().maintenance?.until ?? null
      const until = untilMs === null ? null : new Date(untilMs).toISOString()
      return { message: until ? `Auto-revert disabled until ${until}` : 'Auto-revert disabled until enabled again', details: { vm: vm.name, auto_revert_enabled: false, until } }
    }
  })

  actionRoute(app, {
    methods: POST,
    url: '/watchdog/reset',
    access: 'admin',
    summary: 'Clear "exhausted" after fixing the cause: the watchdog watches (and reverts) again',
    fields: vmFields,
    response: { 200: ackSchema, ...refusals },
    handler: async (fields, request) => {
      const vm = resolveVm(app, request, fields.vm)
      await vm.watchdog.reset()
      return { message: 'Watchdog reset', details: { vm: vm.name, state: vm.watchdog.view().state } }
    }
  })
}

export default technicianRoutes
