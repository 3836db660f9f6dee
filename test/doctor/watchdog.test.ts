// heartbeats, watchdog (maintenance / exhausted) and reverts: inside the service from a real
// Watchdog on test:///default; from the CLI from the real state file and audit trail in a
// scratch data_dir.
import t, { type Test } from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { heartbeatsCheck, revertsCheck, watchdogStateCheck } from '../../src/doctor/checks/watchdog.ts'
import { emptyCounters, type PersistedWatchdogState } from '../../src/heartbeat/persisted.ts'
import { realTimers } from '../../src/ports/index.ts'
import type { Watchdog } from '../../src/heartbeat/watchdog.ts'
import { newWatchdog } from '../helpers/watchdog.ts'
import { AuditLog, StateFile, vmStatePath } from '../../src/store/index.ts'
import { scratch, type Scratch } from './helpers.ts'

const T0 = Date.parse('2026-11-23T12:00:00Z')
const silent = { debug () {}, info () {}, warn () {}, error () {} }

async function watchdogFor (t: Test, s: Scratch, clock: { now (): number }): Promise<Watchdog> {
  const vm = s.loaded.vms[0]!
  const audit = new AuditLog({ dir: s.loaded.config.data_dir })
  await s.hypervisor.connect()
  const watchdog = newWatchdog({
    vm,
    hypervisor: s.hypervisor,
    log: silent,
    clock,
    timers: realTimers,
    persistence: new StateFile(vmStatePath(s.loaded.config.data_dir, vm.name)),
    audit: { append: (entry) => audit.append({ ...entry, vm: vm.name }) }
  })
  await watchdog.start()
  t.teardown(() => watchdog.close())
  return watchdog
}

t.test('heartbeats inside the service: none yet (warn), fresh from the domain\'s network (ok), stale (fail), foreign (warn)', async (t) => {
  let now = T0
  const clock = { now: () => now }
  const s = scratch(t, { config: { startup_grace: 3600 }, now: clock.now })
  const watchdog = await watchdogFor(t, s, clock)
  const service = { watchdogs: new Map([['test', watchdog]]) }

  const none = await s.run(heartbeatsCheck('test'), { service })
  t.equal(none.level, 'warn')
  t.match(none.message, 'no heartbeat from "test" since the service started; watchdog state: starting')

  watchdog.heartbeat({ seq: 1, source: '192.168.122.57' })
  now += 2000
  const fresh = await s.run(heartbeatsCheck('test'), { service })
  t.equal(fresh.level, 'ok')
  t.equal(fresh.message, 'last heartbeat from "test" 2 s ago from 192.168.122.57 (matches the domain\'s network)')

  now += 30_000
  const stale = await s.run(heartbeatsCheck('test'), { service })
  t.equal(stale.level, 'fail')
  t.match(stale.message, 'last heartbeat from "test" 32 s ago from 192.168.122.57: longer than heartbeat_timeout (15 s)')

  watchdog.heartbeat({ seq: 2, source: '10.9.9.9' })
  const foreign = await s.run(heartbeatsCheck('test'), { service })
  t.equal(foreign.level, 'warn')
  t.match(foreign.message, 'from 10.9.9.9, which is not on the domain\'s network')
  t.match(foreign.fix, /guest_addresses/)
})

t.test('heartbeats from the CLI: no service answering (warn)', async (t) => {
  const s = scratch(t, { config: { api_host: '127.0.0.1', api_port: 1 } })
  const r = await s.run(heartbeatsCheck('test'))
  t.equal(r.level, 'warn')
  t.match(r.message, 'no running service answered on 127.0.0.1:1')
})

t.test('watchdog state inside the service: watched (ok), maintenance (warn)', async (t) => {
  let now = T0
  const clock = { now: () => now }
  const s = scratch(t, { config: { startup_grace: 3600 }, now: clock.now })
  const watchdog = await watchdogFor(t, s, clock)
  const service = { watchdogs: new Map([['test', watchdog]]) }
  t.match(await s.run(watchdogStateCheck('test'), { service }), { level: 'ok', message: '"test" is watched: neither maintenance nor exhausted (watchdog)' })
  await watchdog.setMaintenance(30)
  now += 60_000
  const m = await s.run(watchdogStateCheck('test'), { service })
  t.equal(m.level, 'warn')
  t.match(m.message, '"test" is in maintenance (technician) until 2026-11-23T12:30:00.000Z (29 min left): nothing reverts it on its own')
  t.match(m.fix, '/api/v1/revert/enable')
})

function persisted (over: Partial<PersistedWatchdogState>): PersistedWatchdogState {
  return { version: 1, maintenance: null, exhausted: null, escalated: false, recentReverts: [], lastGuestRevertAt: null, counters: emptyCounters(), lastRevert: null, ...over }
}

t.test('watchdog state from the CLI: no file (ok), exhausted (fail), maintenance (warn), expired maintenance (ok), damaged (fail)', async (t) => {
  const s = scratch(t, { now: () => T0 })
  const path = vmStatePath(s.loaded.config.data_dir, 'test')
  t.match(await s.run(watchdogStateCheck('test')), { level: 'ok', message: /no saved state for "test" yet/ })
  mkdirSync(join(s.loaded.config.data_dir, 'state'), { recursive: true })

  writeFileSync(path, JSON.stringify(persisted({ exhausted: { at: T0 - 600_000, reason: '5 reverts within 3600 s' } })))
  const ex = await s.run(watchdogStateCheck('test'))
  t.equal(ex.level, 'fail')
  t.match(ex.message, '"test" is exhausted since 2026-11-23T11:50:00.000Z (5 reverts within 3600 s): the watchdog gave up reverting (saved state ')
  t.match(ex.fix, '/api/v1/watchdog/reset')

  const maintenance = { reason: 'technician' as const, until: null, since: T0, note: null, previous: null }
  writeFileSync(path, JSON.stringify(persisted({ maintenance })))
  t.match(await s.run(watchdogStateCheck('test')), { level: 'warn', message: /in maintenance \(technician\) until switched back on/ })

  writeFileSync(path, JSON.stringify(persisted({ maintenance: { ...maintenance, until: T0 - 1 } })))
  t.match(await s.run(watchdogStateCheck('test')), { level: 'ok' })

  writeFileSync(path, '{"version": 1, "maintenance": "yes"')
  t.match(await s.run(watchdogStateCheck('test')), { level: 'fail', message: /the check itself failed: cannot read .*test\.json/ })
})

t.test('reverts from the audit trail: few (ok), at max_reverts (warn), failures (warn)', async (t) => {
  const s = scratch(t, { config: { max_reverts: 3 }, now: () => T0 })
  const audit = new AuditLog({ dir: s.loaded.config.data_dir })
  t.match(await s.run(revertsCheck('test')), { level: 'ok', message: /^0 reverts of "test" in the last hour, 0 in the last day/ })

  await audit.append({ vm: 'test', kind: 'revert_started', reason: 'heartbeat_timeout', ts: new Date(T0 - 2 * 3600_000) })
  await audit.append({ vm: 'other', kind: 'revert_started', reason: 'heartbeat_timeout', ts: new Date(T0 - 60_000) })
  await audit.append({ vm: 'test', kind: 'revert_started', reason: 'heartbeat_timeout', ts: new Date(T0 - 30 * 60_000) })
  const few = await s.run(revertsCheck('test'))
  t.equal(few.level, 'ok')
  t.match(few.message, /^1 revert of "test" in the last hour, 2 in the last day \(last 30 min ago\)/)

  for (const ago of [20, 10]) await audit.append({ vm: 'test', kind: 'revert_started', reason: 'vm_not_running', ts: new Date(T0 - ago * 60_000) })
  const many = await s.run(revertsCheck('test'))
  t.equal(many.level, 'warn')
  t.match(many.message, /^3 reverts of "test" in the last hour, 4 in the last day .*: at max_reverts \(3\)/)

  const s2 = scratch(t, { now: () => T0 })
  const audit2 = new AuditLog({ dir: s2.loaded.config.data_dir })
  await audit2.append({ vm: 'test', kind: 'revert_failed', reason: 'heartbeat_timeout', error: 'libvirt: internal error', ts: new Date(T0 - 60_000) })
  t.match(await s2.run(revertsCheck('test')), { level: 'warn', message: /1 failed libvirt attempt in the last day/ })
  await audit.close()
  await audit2.close()
})

t.test('heartbeats from the CLI: asks the running service on loopback (ok)', async (t) => {
  const { buildApp } = await import('../../src/app.ts')
  const { parseConfig } = await import('../../src/config/load.ts')
  const { openHypervisor } = await import('../../src/libvirt/index.ts')
  const svc = scratch(t)
  const app = await buildApp({ config: parseConfig({ data_dir: join(svc.dir, 'data'), startup_grace: 3600 }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as import('node:net').AddressInfo).port
  const hb = await app.inject({ method: 'GET', url: '/api/v1/heartbeat?seq=7', remoteAddress: '192.168.122.57' })
  t.equal(hb.statusCode, 200, hb.body)

  const s = scratch(t, { config: { api_host: '127.0.0.1', api_port: port } })
  const r = await s.run(heartbeatsCheck('test'))
  t.equal(r.level, 'ok', r.message)
  t.match(r.message, /^last heartbeat from "test" \d+ s ago from 192\.168\.122\.57 \(matches the domain's network\)$/)
})
