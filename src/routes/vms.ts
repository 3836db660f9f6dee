// GET /api/v1/vms: every watched VM with its watchdog state, schedule and screen detector;
// GET /api/v1/vms/{vm}: one of them. Both carry today's and this week's availability.
// Register once, under /api/v1 (not under /api/v1/vms/:vm).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import type { VmContext } from '../plugins/vms.ts'
import { availabilitySummarySchema, summaryBody } from './availability.ts'
import { errorResponses, iso } from './schemas.ts'
import { detectorViewBody, detectorViewSchema, scheduleViewSchema, screenViewSchema } from './views.ts'

const vmEntrySchema = z.object({
  name: z.string(),
  default: z.boolean().describe('The VM the single-VM paths (/api/v1/status, /heartbeat ...) address'),
  state: z.string().describe('starting | healthy | late | reverting | grace | maintenance | exhausted'),
  maintenance: z.object({ reason: z.string(), until: z.string().nullable() }).nullable(),
  auto_revert_enabled: z.boolean(),
  last_heartbeat: z.string().nullable(),
  seconds_since_last: z.number().nullable(),
  vm_running: z.boolean().nullable(),
  detector: detectorViewSchema.describe('The hang detector: the effective deadline and φ'),
  snapshot_name: z.string(),
  guest_addresses: z.array(z.string()),
  links: z.object({ status: z.string(), screen: z.string() }),
  schedule: scheduleViewSchema.nullable().describe('null: no opening hours configured (always open)'),
  screen: screenViewSchema,
  availability: z.object({ today: availabilitySummarySchema, week: availabilitySummarySchema })
    .describe('The share of opening hours it was healthy since local midnight and since Monday 00:00 (timezone); GET /api/v1/availability for any range')
})

const vmListRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/vms', {
    config: { access: 'read' },
    schema: {
      summary: 'Every VM watched here, with its watchdog state, schedule and screen detector',
      response: { 200: z.object({ default_vm: z.string(), vms: z.array(vmEntrySchema) }), ...errorResponses(401, 403, 429) }
    }
  }, async () => ({ default_vm: app.defaultVm, vms: [...app.vms.values()].map(vmEntry) }))

  app.get('/vms/:vm', {
    config: { access: 'read' },
    schema: {
      summary: 'One watched VM: its watchdog state, schedule, screen detector and availability',
      params: z.object({ vm: z.string().max(64) }),
      response: { 200: vmEntrySchema, ...errorResponses(400, 401, 403, 404, 429) }
    }
  }, async (request) => {
    const vm = app.vms.get(request.params.vm)
    if (!vm) throw new AppError('UNKNOWN_VM', `No VM named "${request.params.vm}" is watched here (watched: ${[...app.vms.keys()].join(', ')})`)
    return vmEntry(vm)
  })

  function vmEntry (vm: VmContext): z.infer<typeof vmEntrySchema> {
    const view = vm.watchdog.view()
    const path = `/api/v1/vms/${encodeURIComponent(vm.name)}`
    return {
      name: vm.name,
      default: vm.name === app.defaultVm,
      state: view.state,
      maintenance: view.maintenance === null ? null : { reason: view.maintenance.reason, until: iso(view.maintenance.until) },
      auto_revert_enabled: view.autoRevertEnabled,
      last_heartbeat: iso(view.lastHeartbeat),
      seconds_since_last: view.secondsSinceLast,
      vm_running: view.vmRunning,
      detector: detectorViewBody(view.detector),
      snapshot_name: vm.config.snapshot_name,
      guest_addresses: vm.config.guest_addresses,
      links: { status: `${path}/status`, screen: `${path}/screen.png` },
      schedule: vm.scheduler?.view() ?? null,
      screen: vm.screen.view(),
      availability: availabilityOf(vm.name)
    }
  }

  function availabilityOf (name: string): z.infer<typeof vmEntrySchema>['availability'] {
    const { today, week } = app.availability.windows(name)
    return { today: summaryBody(today), week: summaryBody(week) }
  }
}

export default vmListRoutes
