// GET /metrics: Prometheus text format from the app's own prom-client Registry (never the global
// one, so several apps in one process, as in the tests, do not collide). Gauges that describe
// "now" (heartbeat age, watchdog and VM state, libvirt connection) are computed at scrape time;
// revert counts and durations are counted from the watchdogs' `revert` events.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { REVERT_SOURCES } from '../heartbeat/persisted.ts'
import { DOMAIN_STATES } from '../libvirt/types.ts'
import { VERSION } from '../version.ts'
import { watchedVms, WATCHDOG_STATES, type RevertEvent } from './observe.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's Prometheus registry (other plugins may add their metrics to it). */
    metricsRegistry: Registry
  }
}

/** Distinct `reason` label values kept per VM; the rest become "other" (guests choose reasons). */
const MAX_REASONS_PER_VM = 20

/* eslint-disable no-new -- prom-client metrics register themselves (`registers`); most are only read through their collect() */
export default fp(async function metricsPlugin (app: FastifyInstance) {
  const register = new Registry()
  // Event-loop delay sampled once a second, not 100 times: at 10 ms it alone cost ~0.7 % of a core idle.
  collectDefaultMetrics({ register, prefix: 'kvw_', eventLoopMonitoringPrecision: 1000 })
  app.decorate('metricsRegistry', register)

  const now = () => app.clock.now()

  new Gauge({ name: 'kvw_info', help: 'Always 1; the labels say which build runs.', labelNames: ['version'], registers: [register] }).set({ version: VERSION }, 1)

  new Gauge({
    name: 'kvw_libvirt_connected',
    help: '1 while the connection to libvirt is up.',
    registers: [register],
    collect () { this.set(app.hypervisor.connected ? 1 : 0) }
  })

  new Gauge({
    name: 'kvw_heartbeat_age_seconds',
    help: 'Seconds since the last heartbeat from the guest (absent until the first one).',
    labelNames: ['vm'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) {
        const last = w.view().lastHeartbeat
        if (last !== null) this.set({ vm }, Math.max(0, (now() - last) / 1000))
      }
    }
  })

  new Counter({
    name: 'kvw_heartbeats_total',
    help: 'Heartbeats received from the guest.',
    labelNames: ['vm'],
    registers: [register],
    collect () {
      // The watchdog counts; a counter cannot be set, so reset and add its total.
      this.reset()
      for (const [vm, w] of watchedVms(app)) this.inc({ vm }, w.view().heartbeatsTotal)
    }
  })

  new Gauge({
    name: 'kvw_heartbeat_deadline_seconds',
    help: 'Seconds from the last heartbeat to the revert if no other comes: heartbeat_timeout (fixed detector), or where φ reaches phi_threshold (adaptive). Absent outside healthy and late.',
    labelNames: ['vm', 'detector', 'rule'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) {
        const d = w.view().detector
        if (d.effectiveTimeout !== null) this.set({ vm, detector: d.detector, rule: d.rule }, d.effectiveTimeout)
      }
    }
  })

  new Gauge({
    name: 'kvw_heartbeat_phi',
    help: 'The adaptive detector\'s suspicion level φ now (−log10 of the chance that the heartbeat is still coming). Absent with the fixed detector or too few heartbeats yet.',
    labelNames: ['vm'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) {
        const phi = w.view().detector.phi
        if (phi !== null) this.set({ vm }, phi)
      }
    }
  })

  new Gauge({
    name: 'kvw_watchdog_state',
    help: 'The watchdog\'s state: 1 for the current one, 0 for the others.',
    labelNames: ['vm', 'state'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) {
        const current = w.view().state
        for (const state of WATCHDOG_STATES) this.set({ vm, state }, state === current ? 1 : 0)
      }
    }
  })

  new Gauge({
    name: 'kvw_exhausted',
    help: '1 when the watchdog gave up reverting (revert loop limit reached) until a technician acts.',
    labelNames: ['vm'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) this.set({ vm }, w.view().exhausted ? 1 : 0)
    }
  })

  new Gauge({
    name: 'kvw_maintenance',
    help: '1 while automatic reverts are off (maintenance, manual stop, closing hours).',
    labelNames: ['vm'],
    registers: [register],
    collect () {
      this.reset()
      for (const [vm, w] of watchedVms(app)) this.set({ vm }, w.view().maintenance ? 1 : 0)
    }
  })

  const vmStates = [...DOMAIN_STATES, 'unknown'] as const
  new Gauge({
    name: 'kvw_vm_state',
    help: 'libvirt\'s state of the VM: 1 for the current one ("unknown" while libvirt is unreachable).',
    labelNames: ['vm', 'state'],
    registers: [register],
    async collect () {
      this.reset()
      const names = [...watchedVms(app).keys()]
      if (names.length === 0) names.push(...app.config.vms.map((v) => v.name))
      await Promise.all(names.map(async (vm) => {
        let current: string = 'unknown'
        if (app.hypervisor.connected) {
          try {
            current = (await app.hypervisor.domainState(vm)).state
          } catch {
            current = 'unknown'
          }
        }
        for (const state of vmStates) this.set({ vm, state }, state === current ? 1 : 0)
      }))
    }
  })

  // Availability (src/availability): the share of opening hours healthy since local midnight and
  // Monday 00:00, and opening time lost by cause since the service started, from each VM's
  // state-change history at scrape time.
  const withAvailability = () => app.hasDecorator('availability') ? [...watchedVms(app).keys()].filter((vm) => app.availability.has(vm)) : []
  new Gauge({
    name: 'kvw_availability_ratio',
    help: 'Share of opening hours the VM was healthy: window="today" since local midnight, "week" since Monday 00:00 (timezone). Absent without opening hours in the window.',
    labelNames: ['vm', 'window'],
    registers: [register],
    collect () {
      this.reset()
      for (const vm of withAvailability()) {
        const { today, week } = app.availability.windows(vm)
        if (today.ratio !== null) this.set({ vm, window: 'today' }, today.ratio)
        if (week.ratio !== null) this.set({ vm, window: 'week' }, week.ratio)
      }
    }
  })
  new Counter({
    name: 'kvw_downtime_seconds_total',
    help: 'Opening time lost since the service started, by cause: hang, vm_down, guest_request, maintenance, closed (closed-hours maintenance inside opening hours), unmonitored.',
    labelNames: ['vm', 'cause'],
    registers: [register],
    collect () {
      this.reset()
      for (const vm of withAvailability()) {
        const lost = app.availability.lostSinceStart(vm)
        for (const [cause, ms] of Object.entries(lost)) this.inc({ vm, cause }, ms / 1000)
      }
    }
  })

  const reverts = new Counter({
    name: 'kvw_reverts_total',
    help: 'Finished revert attempts by reason and outcome (each retry of a failed revert is one more). Count reverts with kvw_reverts_started_total.',
    labelNames: ['vm', 'reason', 'outcome'],
    registers: [register]
  })
  // Per VM, from 0: Prometheus' increase() misses a series' first increment, so a storm rule on
  // kvw_reverts_total (one series per reason, born at 1) saw a storm one revert late.
  // By source, so the storm rule can leave out what was planned: a technician's or the schedule's
  // reverts are not the exhibit crashing again and again.
  const revertsStarted = new Counter({
    name: 'kvw_reverts_started_total',
    help: 'Reverts started, by source: auto (a hang, the VM down), guest (its own request), technician, schedule (retries of one revert are one). Present from 0 for every watched VM and source.',
    labelNames: ['vm', 'source'],
    registers: [register]
  })
  const revertDuration = new Histogram({
    name: 'kvw_revert_duration_seconds',
    help: 'How long the libvirt revert took.',
    labelNames: ['vm'],
    buckets: [0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120],
    registers: [register]
  })
  const reasonsSeen = new Map<string, Set<string>>()
  function reasonLabel (vm: string, reason: string): string {
    const seen = reasonsSeen.get(vm) ?? new Set<string>()
    reasonsSeen.set(vm, seen)
    const r = reason.slice(0, 64)
    if (seen.has(r)) return r
    if (seen.size >= MAX_REASONS_PER_VM) return 'other'
    seen.add(r)
    return r
  }

  const unsubscribe: Array<() => void> = []
  app.addHook('onReady', async () => {
    for (const [vm, w] of watchedVms(app)) {
      for (const source of REVERT_SOURCES) revertsStarted.inc({ vm, source }, 0)
      // A revert counts once, at its first attempt's first event: the start, or the finish when
      // that attempt failed before libvirt's revert call (snapshot missing, libvirt gone: no start).
      // A VM's reverts run one at a time (its action queue).
      let counted = false
      const onRevert = (event: RevertEvent) => {
        if (event.attempt === 1 && !counted) revertsStarted.inc({ vm, source: event.source })
        counted = event.phase === 'start'
        if (event.phase !== 'finish') return
        reverts.inc({ vm, reason: reasonLabel(vm, event.reason), outcome: event.outcome ?? 'unknown' })
        if (typeof event.durationMs === 'number') revertDuration.observe({ vm }, event.durationMs / 1000)
      }
      w.on('revert', onRevert)
      unsubscribe.push(() => w.off('revert', onRevert))
    }
  })
  app.addHook('onClose', async () => {
    for (const u of unsubscribe.splice(0)) u()
  })

  app.get('/metrics', {
    config: { access: 'read' },
    schema: { summary: 'Prometheus metrics (text exposition format)' }
  }, async (_request, reply) => {
    const text = await register.metrics()
    return reply.type(register.contentType).send(text)
  })
}, { name: 'metrics', fastify: '5.x', dependencies: ['hypervisor', 'security', 'vms'] })
