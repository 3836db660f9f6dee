// heartbeats:VM, watchdog:VM (maintenance, exhausted) and reverts:VM. Inside the service they
// read the live watchdog (app.watchdogs); from the CLI they ask the running service on loopback
// and read the persisted state and the audit trail in data_dir.
import { readFile } from 'node:fs/promises'
import { parsePersistedState, type PersistedWatchdogState } from '../../heartbeat/persisted.ts'
import { listenHostKind, networkList } from '../../net/addresses.ts'
import { AuditLog, vmStatePath } from '../../store/index.ts'
import { parseDomainXml, parseNetworkXml } from '../domain-xml.ts'
import type { WatchdogView } from '../../heartbeat/watchdog.ts'
import type { Check, DoctorContext } from '../types.ts'
import { dataDirOf, domainXml, errorText, libvirtProblem, memo, noVm, notChecked, vmOf, type Finding } from './common.ts'
import { join } from 'node:path'

/** What the doctor needs to know about a VM's heartbeats, wherever it came from. */
export interface HeartbeatFacts {
  origin: 'watchdog' | 'running service'
  state: string | null
  /** Epoch ms of the last heartbeat, null: none since the service started. */
  lastAt: number | null
  source: string | null
  /** Epoch ms the service (or watchdog) started, when known. */
  since: number | null
}

function num (v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}
function str (v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null
}

export function factsFromView (view: WatchdogView): HeartbeatFacts {
  return { origin: 'watchdog', state: view.state, lastAt: view.lastHeartbeat, source: view.lastSource, since: null }
}

/** Asks the running service (loopback only) about a VM; null when it does not answer. */
async function factsFromRunningService (ctx: DoctorContext, vm: string): Promise<HeartbeatFacts | null> {
  const { api_host: host, api_port: port } = ctx.loaded!.config
  if (listenHostKind(host) === 'specific') return null
  return memo(ctx, `remote:${vm}`, async () => {
    const answer = await ctx.host.httpGetLoopback(port, `/api/v1/heartbeat/status?vm=${encodeURIComponent(vm)}`, 2000)
    if (answer === null || answer.status !== 200) return null
    try {
      const body = JSON.parse(answer.body) as Record<string, unknown>
      const last = num(body['last_heartbeat'])
      return {
        origin: 'running service',
        state: str(body['state']),
        lastAt: last === null ? null : last * 1000,
        source: str(body['last_source']) ?? str(body['source']),
        since: null
      }
    } catch {
      return null
    }
  })
}

async function heartbeatFacts (ctx: DoctorContext, vm: string): Promise<HeartbeatFacts | null> {
  if (ctx.service !== undefined) {
    const watchdog = ctx.service.watchdogs?.get(vm)
    return watchdog ? factsFromView(watchdog.view()) : null
  }
  return factsFromRunningService(ctx, vm)
}

/** Whether `source` fits how the domain is networked: loopback for user networking, the subnet of its libvirt network, or guest_addresses. */
async function sourceMatches (ctx: DoctorContext, vm: string, source: string): Promise<boolean | null> {
  const config = vmOf(ctx, vm)!
  if (config.guest_addresses.includes(source)) return true
  if (await libvirtProblem(ctx) !== null) return null
  let xml: string
  try {
    xml = await domainXml(ctx, vm)
  } catch {
    return null
  }
  const facts = parseDomainXml(xml)
  const ranges: string[] = []
  for (const iface of facts.interfaces) {
    if (iface.type === 'user') ranges.push('127.0.0.0/8', '::1')
    if (iface.type === 'network' && 'network' in iface) {
      try {
        const net = parseNetworkXml(await readFile(join(ctx.host.paths.libvirtNetworks, `${iface.network}.xml`), 'utf8'))
        for (const a of net.addresses) if (/^\d+\.\d+\.\d+\.\d+$/.test(a.address)) ranges.push(`${a.address.replace(/\.\d+$/, '.0')}/${Math.min(a.prefix, 24)}`)
      } catch {}
    }
    if (iface.type === 'bridge') return null // any LAN address: cannot tell
  }
  if (ranges.length === 0) return null
  return networkList(ranges)(source)
}

function ago (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`
}

export function heartbeatsCheck (vm: string): Check {
  return {
    id: `heartbeats:${vm}`,
    async run (ctx): Promise<Finding> {
      const config = vmOf(ctx, vm)
      if (config === null) return noVm(ctx, vm)
      const facts = await heartbeatFacts(ctx, vm)
      if (facts === null && ctx.service !== undefined) return notChecked(`this service has no watchdog for "${vm}"`)
      if (facts === null) {
        return {
          level: 'warn',
          message: `no running service answered on 127.0.0.1:${ctx.loaded!.config.api_port}: heartbeats of "${vm}" are not being received now`,
          fix: 'sudo systemctl start kiosk-vm-watchdog (see systemd), then run doctor again'
        }
      }
      const now = ctx.now()
      const inMaintenance = facts.state === 'maintenance'
      const guestFix = `in the guest: curl http://HOST:${ctx.loaded!.config.api_port}/api/v1/heartbeat must answer (HOST: see guest_network:${vm}); check its heartbeat script runs`
      if (facts.lastAt === null) {
        const starting = facts.state === 'starting' || facts.state === 'grace' || facts.state === 'reverting'
        return {
          level: starting || inMaintenance ? 'warn' : 'fail',
          message: `no heartbeat from "${vm}" since the service started${facts.since !== null ? ` (${ago(now - facts.since)} ago)` : ''}${facts.state ? `; watchdog state: ${facts.state}` : ''}`,
          fix: guestFix
        }
      }
      const age = now - facts.lastAt
      const from = facts.source ? ` from ${facts.source}` : ''
      let match = ''
      if (facts.source) {
        const ok = await sourceMatches(ctx, vm, facts.source)
        if (ok === false) {
          return {
            level: 'warn',
            message: `last heartbeat for "${vm}" ${ago(age)} ago${from}, which is not on the domain's network: another VM or a test may be sending them`,
            fix: `check which machine is ${facts.source}; map addresses to VMs with guest_addresses (or vms[].guest_addresses)`
          }
        }
        if (ok === true) match = ' (matches the domain\'s network)'
      }
      if (age > config.heartbeat_timeout * 1000) {
        return {
          level: inMaintenance ? 'warn' : 'fail',
          message: `last heartbeat from "${vm}" ${ago(age)} ago${from}: longer than heartbeat_timeout (${config.heartbeat_timeout} s)${facts.state ? `; watchdog state: ${facts.state}` : ''}`,
          fix: guestFix
        }
      }
      return { level: 'ok', message: `last heartbeat from "${vm}" ${ago(age)} ago${from}${match}` }
    }
  }
}

/** The watchdog's view in the service; the persisted state file from the CLI. */
async function persistedState (ctx: DoctorContext, vm: string): Promise<{ state: PersistedWatchdogState | null, path: string }> {
  const path = vmStatePath(dataDirOf(ctx)!, vm)
  try {
    return { state: parsePersistedState(JSON.parse(await readFile(path, 'utf8'))), path }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: null, path }
    throw new Error(`cannot read ${path}: ${errorText(err)}`)
  }
}

function describeUntil (until: number | null, now: number): string {
  return until === null ? 'until switched back on' : until <= now ? 'expired' : `until ${new Date(until).toISOString()} (${ago(until - now)} left)`
}

export function watchdogStateCheck (vm: string): Check {
  return {
    id: `watchdog:${vm}`,
    async run (ctx): Promise<Finding> {
      if (vmOf(ctx, vm) === null) return noVm(ctx, vm)
      const now = ctx.now()
      const port = ctx.loaded!.config.api_port
      let exhausted: { at: number, reason: string } | null = null
      let maintenance: { reason: string, until: number | null } | null = null
      let origin: string
      const watchdog = ctx.service?.watchdogs?.get(vm)
      if (watchdog) {
        const view = watchdog.view()
        origin = 'watchdog'
        exhausted = view.exhausted
        maintenance = view.maintenance
      } else {
        const { state, path } = await persistedState(ctx, vm)
        origin = `saved state ${path}`
        if (state === null) return { level: 'ok', message: `no saved state for "${vm}" yet (${path}): neither maintenance nor exhausted` }
        exhausted = state.exhausted
        if (state.maintenance && (state.maintenance.until === null || state.maintenance.until > now)) maintenance = state.maintenance
      }
      if (exhausted) {
        return {
          level: 'fail',
          message: `"${vm}" is exhausted since ${new Date(exhausted.at).toISOString()} (${exhausted.reason}): the watchdog gave up reverting (${origin})`,
          fix: `find the cause (reverts:${vm}, journalctl -u kiosk-vm-watchdog), then: curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:${port}/api/v1/watchdog/reset`
        }
      }
      if (maintenance) {
        return {
          level: 'warn',
          message: `"${vm}" is in maintenance (${maintenance.reason}) ${describeUntil(maintenance.until, now)}: nothing reverts it on its own (${origin})`,
          fix: `end it: curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:${port}/api/v1/revert/enable${maintenance.reason === 'config' ? ' (or set auto_revert_enabled: true)' : ''}`
        }
      }
      return { level: 'ok', message: `"${vm}" is watched: neither maintenance nor exhausted (${origin})` }
    }
  }
}

export const REVERT_KIND = 'revert_started'
const HOUR = 3600_000
const DAY = 24 * HOUR

export function revertsCheck (vm: string): Check {
  return {
    id: `reverts:${vm}`,
    timeoutMs: 10_000,
    async run (ctx): Promise<Finding> {
      const config = vmOf(ctx, vm)
      if (config === null) return noVm(ctx, vm)
      const audit = new AuditLog({ dir: dataDirOf(ctx)! })
      const now = ctx.now()
      const result = await audit.query({ vm, kind: REVERT_KIND, limit: 5000 })
      const times = result.entries.map((e) => Date.parse(e.ts))
      const lastHour = times.filter((t) => t > now - HOUR).length
      const lastDay = times.filter((t) => t > now - DAY).length
      const failed = (await audit.query({ vm, kind: 'revert_failed', limit: 1000 })).entries.filter((e) => Date.parse(e.ts) > now - DAY).length
      const last = times[0]
      const summary = `${lastHour} revert${lastHour === 1 ? '' : 's'} of "${vm}" in the last hour, ${lastDay} in the last day${last !== undefined ? ` (last ${ago(now - last)} ago)` : ''}${failed > 0 ? `; ${failed} failed libvirt attempt${failed === 1 ? '' : 's'} in the last day` : ''} (${audit.path})`
      const fix = `see why: curl http://127.0.0.1:${ctx.loaded!.config.api_port}/api/v1/events?kind=${REVERT_KIND}; docs/troubleshooting.md "Reverts too often"`
      if (lastHour >= config.max_reverts) return { level: 'warn', message: `${summary}: at max_reverts (${config.max_reverts})`, fix }
      if (failed > 0) return { level: 'warn', message: summary, fix: `journalctl -u kiosk-vm-watchdog -o cat | jq 'select(.vm == "${vm}" and .level >= 40)'` }
      if (lastDay >= config.max_reverts) return { level: 'warn', message: summary, fix }
      return { level: 'ok', message: summary }
    }
  }
}
