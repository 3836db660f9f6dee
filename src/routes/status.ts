// Read-only views: /status (what a technician checks first) and /heartbeat/status (EVC's fields
// and the ones its docs promised). /vms (every watched VM at a glance) is in vms.ts; the watchdog
// view's shape, shared with the live stream, is in views.ts.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { WatchdogView } from '../heartbeat/watchdog.ts'
import type { VmContext } from '../plugins/vms.ts'
import { VERSION } from '../version.ts'
import { errorResponses, iso } from './schemas.ts'
import { resolveVm } from './vm-context.ts'
import { scheduleViewSchema, screenViewSchema, watchdogViewBody, watchdogViewSchema } from './views.ts'

const vmQuery = z.object({ vm: z.string().max(64).optional() })

/** libvirt's domain state names as `virsh domstate` prints them (EVC's vm_state). */
export const VIRSH_STATE_WORDS: Readonly<Record<string, string>> = {
  nostate: 'no state',
  running: 'running',
  blocked: 'idle',
  paused: 'paused',
  shutdown: 'in shutdown',
  shutoff: 'shut off',
  crashed: 'crashed',
  pmsuspended: 'pmsuspended'
}

export const heartbeatStatusSchema = z.object({
  vm_name: z.string(),
  enabled: z.boolean().describe('Automatic reverts on (false in maintenance).'),
  timeout: z.number(),
  last_heartbeat: z.number().nullable().describe('Epoch seconds of the last heartbeat (null: none since the service started).'),
  last_heartbeat_at: z.string().nullable(),
  time_since_heartbeat: z.number().nullable(),
  seconds_since_last: z.number().nullable(),
  is_timed_out: z.boolean().describe('No heartbeat within the deadline in force; false in maintenance (nothing reverts then), as EVC.'),
  has_received_heartbeat: z.boolean(),
  is_healthy: z.boolean(),
  state: z.string(),
  last_seq: z.number().nullable(),
  last_status: z.string().nullable(),
  last_source: z.string().nullable(),
  heartbeats_total: z.number()
})

export function heartbeatStatus (view: WatchdogView): z.infer<typeof heartbeatStatusSchema> {
  const since = view.secondsSinceLast === null ? null : Math.round(view.secondsSinceLast * 1000) / 1000
  // Past the deadline in force: heartbeat_timeout, or the adaptive detector's (never later).
  const stale = since !== null && since >= (view.detector.effectiveTimeout ?? view.timeout)
  // EVC: no timeout while auto-revert is off (its UI then shows "Disabled", not "Timeout").
  const timedOut = stale && view.maintenance === null
  return {
    vm_name: view.vm,
    enabled: view.autoRevertEnabled,
    timeout: view.timeout,
    last_heartbeat: view.lastHeartbeat === null ? null : view.lastHeartbeat / 1000,
    last_heartbeat_at: iso(view.lastHeartbeat),
    time_since_heartbeat: since,
    seconds_since_last: since,
    is_timed_out: timedOut,
    has_received_heartbeat: view.lastHeartbeat !== null,
    is_healthy: since !== null && !stale && (view.state === 'healthy' || view.state === 'late' || view.state === 'maintenance'),
    state: view.state,
    last_seq: view.lastSeq,
    last_status: view.lastStatus,
    last_source: view.lastSource,
    heartbeats_total: view.heartbeatsTotal
  }
}

const statusSchema = z.object({
  service: z.literal('kiosk-vm-watchdog'),
  version: z.string(),
  uptime_seconds: z.number(),
  libvirt: z.object({ uri: z.string(), connected: z.boolean() }),
  vm_name: z.string(),
  vm_state: z.string().describe('The domain state in virsh\'s words, as EVC reported it: running, idle, paused, in shutdown, shut off, crashed, pmsuspended, no state; "unknown" while libvirt is unreachable'),
  domain_state: z.string().describe('The same state by libvirt\'s name: running, blocked, paused, shutdown, shutoff, crashed, pmsuspended, nostate; "unknown" while libvirt is unreachable'),
  vm_state_reason: z.string().nullable(),
  vm_is_running: z.boolean(),
  snapshot_name: z.string(),
  snapshot_exists: z.boolean().nullable().describe('null while libvirt is unreachable'),
  snapshot_target: z.string().nullable().describe('The snapshot a revert uses now (the newest version of snapshot_name).'),
  snapshot_has_memory: z.boolean().nullable(),
  snapshot_problems: z.array(z.string()),
  snapshot_warnings: z.array(z.string()).describe('What works but is not ideal: no memory state; an older snapshot named exactly snapshot_name beside the newer revision reverts use'),
  auto_revert_enabled: z.boolean(),
  watchdog: watchdogViewSchema,
  heartbeat: heartbeatStatusSchema,
  schedule: scheduleViewSchema.nullable().describe('Opening hours: open now, the next action (null: no schedule, always open)'),
  screen: screenViewSchema.describe('Frozen-screen detection'),
  saved_state: z.object({
    loaded_from: z.enum(['file', 'missing', 'backup', 'none']).nullable().describe('At start: file, missing (first start), backup (the file was damaged: an OLDER state was restored), none (nothing usable)'),
    problem: z.string().nullable().describe('What was wrong with the state file at start'),
    save_error: z.string().nullable().describe('Why the last save failed (null: saving works); changes are refused (503) while it fails')
  }).describe('The VM\'s persisted state ({data_dir}/state/{vm}.json)')
})

async function vmStatus (app: Parameters<FastifyPluginAsyncZod>[0], vm: VmContext): Promise<z.infer<typeof statusSchema>> {
  const h = app.hypervisor
  const view = vm.watchdog.view()
  let vmState = 'unknown'
  let reason: string | null = null
  let snapshot: { exists: boolean, target: string | null, hasMemory: boolean | null, problems: string[], warnings: string[] } | null = null
  if (h.connected) {
    try {
      const check = await vm.snapshots.check(vm.name, vm.config.snapshot_name)
      vmState = check.domainState ?? 'unknown'
      snapshot = { exists: check.exists, target: check.target, hasMemory: check.exists ? check.hasMemory : null, problems: check.problems, warnings: check.warnings }
      if (check.domainExists) reason = (await h.domainState(vm.name)).reasonName
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
    vm_state: VIRSH_STATE_WORDS[vmState] ?? vmState,
    domain_state: vmState,
    vm_state_reason: reason,
    vm_is_running: vmState === 'running',
    snapshot_name: vm.config.snapshot_name,
    snapshot_exists: snapshot?.exists ?? null,
    snapshot_target: snapshot?.target ?? null,
    snapshot_has_memory: snapshot?.hasMemory ?? null,
    snapshot_problems: snapshot?.problems ?? (h.connected ? [] : ['libvirt is not reachable']),
    snapshot_warnings: snapshot?.warnings ?? [],
    auto_revert_enabled: view.autoRevertEnabled,
    watchdog: watchdogViewBody(view),
    heartbeat: heartbeatStatus(view),
    schedule: vm.scheduler?.view() ?? null,
    screen: vm.screen.view(),
    saved_state: { loaded_from: vm.stateFile.loadReport?.source ?? null, problem: vm.stateFile.loadReport?.problem ?? null, save_error: vm.stateFile.lastSaveError }
  }
}

/** Routes registered once per VM prefix (/api/v1 and /api/v1/vms/:vm). */
const statusRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/status', {
    config: { access: 'read' },
    schema: { summary: 'Service, VM, snapshot and watchdog status', querystring: vmQuery, response: { 200: statusSchema, ...errorResponses(400, 401, 403, 404, 429) } }
  }, async (request) => vmStatus(app, resolveVm(app, request, request.query.vm)))

  app.get('/heartbeat/status', {
    config: { access: 'read' },
    schema: { summary: 'Heartbeat status (exhibition-vm-controller\'s fields, plus is_healthy and seconds_since_last)', querystring: vmQuery, response: { 200: heartbeatStatusSchema, ...errorResponses(400, 401, 403, 404, 429) } }
  }, async (request) => heartbeatStatus(resolveVm(app, request, request.query.vm).watchdog.view()))
}

export default statusRoutes
