// The availability figures (src/availability): records every watchdog's state changes in its
// VM's history (`{data_dir}/history/{vm}.jsonl`, changes only, never a heartbeat) and decorates
// `app.availability` for the route, /vms and the metrics.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { AvailabilityService } from '../availability/service.ts'
import type { WatchdogView } from '../heartbeat/watchdog.ts'
import { watchedVms } from './observe.ts'

declare module 'fastify' {
  interface FastifyInstance {
    availability: AvailabilityService
  }
}

export default fp(async function availabilityPlugin (app: FastifyInstance) {
  const service = new AvailabilityService({
    dataDir: app.config.config.data_dir,
    vms: app.config.vms.map((vm) => ({ name: vm.name, schedule: vm.schedule })),
    timezone: app.config.config.timezone,
    clock: app.clock,
    timers: app.timers,
    log: app.log
  })
  await service.load()
  app.decorate('availability', service)

  // The watchdogs are running already (the vms plugin started them): record where each stands,
  // then every change.
  const unsubscribe: Array<() => void> = []
  for (const [vm, w] of watchedVms(app)) {
    if (!service.has(vm)) continue
    service.observe(vm, w.view())
    const onChange = (view: WatchdogView) => service.observe(vm, view)
    w.on('change', onChange)
    unsubscribe.push(() => w.off('change', onChange))
  }
  app.addHook('onClose', async () => {
    for (const off of unsubscribe.splice(0)) off()
    await service.stop()
  })
}, { name: 'availability', fastify: '5.x', dependencies: ['vms'] })
