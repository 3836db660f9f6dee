// GET /api/v1/status: what a technician checks first.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { VERSION } from '../version.ts'
import { errorResponses } from './schemas.ts'

const statusSchema = z.object({
  service: z.literal('kiosk-vm-watchdog'),
  version: z.string(),
  uptime_seconds: z.number(),
  libvirt: z.object({ uri: z.string(), connected: z.boolean() }),
  vm_name: z.string(),
  vm_state: z.string().describe('libvirt domain state, or "unknown" while libvirt is unreachable'),
  vm_state_reason: z.string().nullable(),
  vm_is_running: z.boolean(),
  snapshot_name: z.string(),
  snapshot_exists: z.boolean().nullable().describe('null while libvirt is unreachable'),
  snapshot_has_memory: z.boolean().nullable(),
  auto_revert_enabled: z.boolean()
})

const statusRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/status', {
    schema: {
      summary: 'Service, VM and snapshot status',
      response: { 200: statusSchema, ...errorResponses(500) }
    }
  }, async () => {
    const vm = app.config.vms[0]!
    const h = app.hypervisor
    let vmState: string = 'unknown'
    let reason: string | null = null
    let snapshot: { exists: boolean, hasMemory: boolean } | null = null
    if (h.connected) {
      try {
        const s = await h.domainState(vm.name)
        vmState = s.state
        reason = s.reasonName
        const snaps = await h.listSnapshots(vm.name)
        const found = snaps.find((x) => x.name === vm.snapshot_name)
        snapshot = { exists: found !== undefined, hasMemory: found?.hasMemory ?? false }
      } catch (err) {
        app.log.warn({ err, vm: vm.name }, 'status: cannot read the VM from libvirt')
      }
    }
    return {
      service: 'kiosk-vm-watchdog' as const,
      version: VERSION,
      uptime_seconds: Math.round((app.clock.now() - app.startedAt) / 1000),
      libvirt: { uri: h.uri, connected: h.connected },
      vm_name: vm.name,
      vm_state: vmState,
      vm_state_reason: reason,
      vm_is_running: vmState === 'running',
      snapshot_name: vm.snapshot_name,
      snapshot_exists: snapshot?.exists ?? null,
      snapshot_has_memory: snapshot?.hasMemory ?? null,
      auto_revert_enabled: vm.auto_revert_enabled
    }
  })
}

export default statusRoutes
