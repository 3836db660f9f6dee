// What technicians (and the dashboard) do to a VM: revert now, start, stop, maintenance on/off,
// clear "exhausted". EVC's paths answer GET too, as EVC did (technicians open them in a browser).
// Every action goes to the VM's watchdog, which runs libvirt actions through its one queue.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { MAINTENANCE_MAX_MINUTES } from '../limits.ts'
import { cleanText, errorResponses, flagField, reasonField, vmField } from './schemas.ts'
import { vmAction } from './vm-context.ts'

const vmFields = z.object({ vm: vmField })
const revertFields = vmFields.extend({ reason: reasonField.describe('Recorded in the audit trail (default: technician); any text, cleaned and cut to 200 characters.') })
const disableFields = vmFields.extend({
  minutes: z.coerce.number().positive().max(MAINTENANCE_MAX_MINUTES).optional().describe('How long auto-revert stays off (default: maintenance_minutes from config).'),
  indefinite: flagField.describe('true: until switched back on.')
})
const refusals = errorResponses(400, 401, 403, 404, 409, 429, 503)

const technicianRoutes: FastifyPluginAsyncZod = async (app) => {
  vmAction(app, 'POST /revert', { status: 202, fields: revertFields, refusals, summary: 'Revert the VM to its snapshot now (a technician\'s revert: allowed in maintenance, clears exhausted)' }, async (vm, fields) => {
    const cleaned = cleanText(fields.reason ?? '')
    const reason = cleaned.text || 'technician'
    const result = vm.watchdog.requestRevert(reason, 'technician')
    const ignored = cleaned.changes.map((change) => `reason: ${change}`)
    return { message: result.outcome === 'started' ? 'Revert started' : 'A revert is already under way', details: { vm: vm.name, reason, outcome: result.outcome, ...(ignored.length > 0 ? { ignored } : {}) } }
  })

  vmAction(app, 'GET POST /vm/start', { status: 202, fields: vmFields, refusals, summary: 'Clear a manual stop and bring the VM up (revert to the snapshot)' }, async (vm) => {
    const result = await vm.watchdog.startVm()
    return { message: 'Starting the VM', details: { vm: vm.name, outcome: result.outcome } }
  })

  vmAction(app, 'GET POST /vm/stop', { status: 202, fields: vmFields, refusals, summary: 'Stop the VM on purpose: the watchdog will not bring it back until /vm/start' }, async (vm) => {
    // Resolves after the destroy (its failures are logged); rejects (503) only when the stop
    // could not be saved, and then nothing was done.
    await vm.watchdog.stopVm()
    return { message: 'Stopping the VM; auto-revert is off until /vm/start', details: { vm: vm.name } }
  })

  vmAction(app, 'GET POST /revert/enable', { status: 200, fields: vmFields, refusals, summary: 'End maintenance: automatic reverts on again' }, async (vm) => {
    await vm.watchdog.clearMaintenance() // 2xx only once saved: else 503 and nothing changed
    return { message: 'Auto-revert enabled', details: { vm: vm.name, auto_revert_enabled: true } }
  })

  vmAction(app, 'GET POST /revert/disable', { status: 200, fields: disableFields, refusals, summary: 'Maintenance: automatic reverts off for a while (expires on its own)' }, async (vm, fields) => {
    const minutes = fields.indefinite ? null : (fields.minutes ?? app.config.config.maintenance_minutes)
    await vm.watchdog.setMaintenance(minutes, 'technician') // 2xx only once saved: else 503 and nothing changed
    // The watchdog's own `until` (read once, rounded to the ms), so the answer matches /status.
    const untilMs = vm.watchdog.view().maintenance?.until ?? null
    const until = untilMs === null ? null : new Date(untilMs).toISOString()
    return { message: until ? `Auto-revert disabled until ${until}` : 'Auto-revert disabled until enabled again', details: { vm: vm.name, auto_revert_enabled: false, until } }
  })

  vmAction(app, 'POST /watchdog/reset', { status: 200, fields: vmFields, refusals, summary: 'Clear "exhausted" after fixing the cause: the watchdog watches (and reverts) again' }, async (vm) => {
    await vm.watchdog.reset()
    return { message: 'Watchdog reset', details: { vm: vm.name, state: vm.watchdog.view().state } }
  })
}

export default technicianRoutes
