// One watchdog per VM, with its snapshot service, persisted state and audit trail; the routes
// reach them through `app.vms` (by name), `app.defaultVm` and `app.vmsByAddress`.
import fp from 'fastify-plugin'
import { dirname } from 'node:path'
import type { VmConfig } from '../config/schema.ts'
import { parsePersistedState } from '../heartbeat/persisted.ts'
import { Watchdog } from '../heartbeat/watchdog.ts'
import { Scheduler } from '../schedule/index.ts'
import { loadErrorImages, ScreenSampler } from '../screen/index.ts'
import { SnapshotService } from '../snapshot/index.ts'
import { AuditLog, RequestAuditSummary, StateFile, vmStatePath, type AuditEventInput } from '../store/index.ts'

export interface VmContext {
  name: string
  config: VmConfig
  watchdog: Watchdog
  snapshots: SnapshotService
  /** Opening hours (null: no schedule, always open). */
  scheduler: Scheduler | null
  /** Frozen-screen detection (samples only when screen.enabled) and the screen thumbnail. */
  screen: ScreenSampler
  /** Appends an audit entry for this VM. */
  audit (entry: AuditEventInput): Promise<void>
  /** The VM's state file: what its load found (loadReport) and whether saving works (lastSaveError), for /status. */
  stateFile: StateFile<unknown>
}

declare module 'fastify' {
  interface FastifyInstance {
    vms: Map<string, VmContext>
    /** Watchdogs by VM name (for observers: metrics, SSE, doctor). */
    watchdogs: Map<string, Watchdog>
    defaultVm: string
    vmsByAddress: Map<string, VmContext>
    audit: AuditLog
  }
}

export default fp(async function vmsPlugin (app) {
  const { config, vms: vmConfigs } = app.config
  const hypervisor = app.hypervisor
  const audit = new AuditLog({ dir: config.data_dir, log: app.log })
  // Refused and merged revert requests go to the trail as one summary per minute, not a line each.
  const requestAudit = new RequestAuditSummary({ write: (entry) => audit.append(entry), clock: app.clock, timers: app.timers, log: app.log })
  const vms = new Map<string, VmContext>()
  const byAddress = new Map<string, VmContext>()

  // libvirt's test driver starts empty: give its VM the snapshot the quick start needs.
  const createMissing = config.create_snapshot_if_missing || config.libvirt_uri.startsWith('test:')
  for (const vmConfig of vmConfigs) {
    const log = app.log.child({ vm: vmConfig.name })
    const snapshots = new SnapshotService({ hypervisor, log, keepRevisions: vmConfig.keep_revisions, clock: app.clock })
    if (createMissing && hypervisor.connected) {
      try {
        const { created, target } = await snapshots.ensure(vmConfig.name, vmConfig.snapshot_name, { description: 'created at start by kiosk-vm-watchdog (create_snapshot_if_missing)', requireRunning: true })
        if (created) log.info({ snapshot: target }, 'snapshot was missing: created it from the VM as it is')
      } catch (err) {
        log.error({ err }, 'cannot create the missing snapshot')
      }
    }
    const appendAudit = (entry: AuditEventInput) => audit.append({ vm: vmConfig.name, ...entry })
    const stateFile = new StateFile<unknown>(vmStatePath(config.data_dir, vmConfig.name), { log, parse: parsePersistedState })
    const watchdog = new Watchdog({
      vm: vmConfig,
      hypervisor,
      log,
      clock: app.clock,
      timers: app.timers,
      persistence: stateFile as StateFile<ReturnType<typeof parsePersistedState>>,
      audit: { append: (entry) => requestAudit.append(entry) },
      guestRevertMinInterval: config.security.guest_revert_min_interval,
      resolveSnapshot: () => snapshots.resolveRevertTarget(vmConfig.name, vmConfig.snapshot_name)
    })
    const scheduler = vmConfig.schedule === null
      ? null
      : new Scheduler({ vm: vmConfig.name, schedule: vmConfig.schedule, timezone: config.timezone, target: watchdog, clock: app.clock, timers: app.timers, log })
    const screen = new ScreenSampler({
      vm: vmConfig.name,
      config: vmConfig.screen,
      source: hypervisor,
      target: watchdog,
      clock: app.clock,
      timers: app.timers,
      log,
      errorImages: loadErrorImages(vmConfig.screen.error_images, app.config.file === null ? '.' : dirname(app.config.file), log)
    })
    const context: VmContext = { name: vmConfig.name, config: vmConfig, watchdog, snapshots, scheduler, screen, audit: appendAudit, stateFile }
    vms.set(vmConfig.name, context)
    for (const address of vmConfig.guest_addresses) byAddress.set(address, context)
  }

  app.decorate('vms', vms)
  app.decorate('watchdogs', new Map([...vms].map(([name, vm]) => [name, vm.watchdog])))
  app.decorate('defaultVm', vmConfigs[0]!.name)
  app.decorate('vmsByAddress', byAddress)
  app.decorate('audit', audit)

  for (const vm of vms.values()) {
    await vm.watchdog.start()
    // A damaged state file brings back an older state (or none): the audit trail says so too.
    const report = vm.stateFile.loadReport
    if (report !== null && (report.source === 'backup' || report.source === 'none') && report.problem !== null) {
      await vm.audit({ kind: 'state_not_restored', reason: report.source === 'backup' ? 'restored_from_backup' : 'started_without_saved_state', problem: report.problem })
        .catch((err: unknown) => app.log.error({ err, vm: vm.name }, 'cannot write the audit trail'))
    }
  }
  // After the watchdogs: the scheduler applies open/closed at once, the sampler reads their state.
  for (const vm of vms.values()) {
    vm.scheduler?.start()
    vm.screen.start()
  }
  app.addHook('onClose', async () => {
    for (const vm of vms.values()) vm.scheduler?.stop()
    await Promise.all([...vms.values()].map((vm) => vm.screen.stop()))
    await Promise.all([...vms.values()].map((vm) => vm.watchdog.close()))
    await requestAudit.close()
    await audit.close()
  })
}, { name: 'vms', dependencies: ['hypervisor'], fastify: '5.x' })
