// Throughput of the heartbeat endpoint, and what a flood costs: autocannon (100 connections,
// 10 s) against the service on libvirt's in-process test:///default driver (no VM needed), with
// the DEFAULT guest rate limit (600 a minute per VM and address): past it every heartbeat is
// still counted and answered 429. Prints requests/s, latency, the service's CPU time per request
// and the log lines the flood caused. --guest-limit N raises the limit (every request answered
// 200: the full path). Prints numbers, no pass/fail.
//   node --import tsx bench/throughput.ts [--connections 100] [--duration 10] [--guest-limit N] [--dist]
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, REPO_ROOT, removeServiceConfig, startService, writeServiceConfig } from '../harness/service.ts'
import { benchArgs, loadNote, serviceEntry } from './lib.ts'

const args = benchArgs(1, { connections: { type: 'string' }, duration: { type: 'string' }, 'guest-limit': { type: 'string' } })
const connections = Number(args.values.connections ?? 100)
const duration = Number(args.values.duration ?? 10)
const guestLimit = args.values['guest-limit'] === undefined ? null : Number(args.values['guest-limit'])
if (!(Number.isInteger(connections) && connections >= 1 && connections <= 10_000)) throw new Error(`--connections must be 1..10000, got ${String(args.values.connections)}`)
if (!(duration >= 1 && duration <= 600)) throw new Error(`--duration must be 1..600 s, got ${String(args.values.duration)}`)
if (guestLimit !== null && !(Number.isInteger(guestLimit) && guestLimit >= 1)) throw new Error(`--guest-limit must be a whole number >= 1, got ${String(args.values['guest-limit'])}`)

/** CPU seconds (user + system) the process has used so far, from /proc/PID/stat. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ 100)
}

interface AutocannonResult {
  requests: { average: number, total: number }
  latency: { average: number, p50: number, p99: number, max: number }
  '2xx': number
  non2xx: number
  errors: number
  timeouts: number
  statusCodeStats?: Record<string, { count: number }>
}

/** autocannon as its own process (its CLI with --json), so it does not share this event loop. */
function autocannon (url: string, c: number, d: number): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(REPO_ROOT, 'node_modules', 'autocannon', 'autocannon.js'), '-c', String(c), '-d', String(d), '--json', url],
      { maxBuffer: 64 * 1024 * 1024, timeout: (d + 60) * 1000 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`autocannon failed: ${error.message}\n${stderr}`))
        else resolve(JSON.parse(stdout) as AutocannonResult)
      })
  })
}

const port = await freePort()
const config = await writeServiceConfig({
  port,
  vmName: 'test',
  libvirtUri: 'test:///default',
  extra: { log_level: 'info', heartbeat_timeout: 60, security: guestLimit === null ? {} : { rate_limit_guest: guestLimit } }
})
let failed = false
const service = await startService(config, { entry: serviceEntry(args.dist) })
try {
  const url = `http://127.0.0.1:${port}/api/v1/heartbeat?seq=1&status=ok`
  console.log(`heartbeat throughput: service (${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}) on test:///default, autocannon -c ${connections} -d ${duration}, guest limit ${guestLimit ?? 'default (600 a minute)'}`)
  console.log(`before: ${loadNote()}`)
  await autocannon(url, connections, 2) // warm-up (JIT, connections), not reported
  const before = await service.get('/api/v1/heartbeat/status')
  const cpuBefore = cpuSeconds(service.pid)
  const logsBefore = service.logs.length
  const r = await autocannon(url, connections, duration)
  const cpu = cpuSeconds(service.pid) - cpuBefore
  const logLines = service.logs.length - logsBefore
  const codes = Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([code, s]) => [code, s.count]))
  console.log(`  requests/s: ${Math.round(r.requests.average)} (total ${r.requests.total}; status codes ${JSON.stringify(codes)}, errors ${r.errors}, timeouts ${r.timeouts})`)
  console.log(`  latency: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, mean ${r.latency.average} ms, max ${r.latency.max} ms`)
  console.log(`  service CPU: ${cpu.toFixed(2)} s in ${duration} s (${Math.round(100 * cpu / duration)} % of a core), ${r.requests.total > 0 ? Math.round(1e6 * cpu / r.requests.total) : '-'} µs per request; ${logLines} log lines`)
  const hb = await service.get('/api/v1/heartbeat/status')
  console.log(`  the watchdog counted ${hb.heartbeats_total - before.heartbeats_total} heartbeats in the run (autocannon sent ${r.requests.total}); state ${hb.state}`)
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  await service.stop()
  await removeServiceConfig(config)
}
process.exit(failed ? 1 : 0)
