// Throughput of the heartbeat endpoint: autocannon (100 connections, 10 s) against the service on
// libvirt's in-process test:///default driver (no VM needed). The guest rate limit is raised for
// this (the default, 600 a minute per client address, would answer nearly everything with 429).
// Prints numbers, no pass/fail.
//   node --import tsx bench/throughput.ts [--connections 100] [--duration 10] [--dist]
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { freePort, REPO_ROOT, removeServiceConfig, startService, writeServiceConfig } from '../test/e2e/service-harness.ts'
import { benchArgs, loadNote, serviceEntry } from './lib.ts'

const args = benchArgs(1, { connections: { type: 'string' }, duration: { type: 'string' } })
const connections = Number(args.values.connections ?? 100)
const duration = Number(args.values.duration ?? 10)
if (!(Number.isInteger(connections) && connections >= 1 && connections <= 10_000)) throw new Error(`--connections must be 1..10000, got ${String(args.values.connections)}`)
if (!(duration >= 1 && duration <= 600)) throw new Error(`--duration must be 1..600 s, got ${String(args.values.duration)}`)

interface AutocannonResult {
  requests: { average: number, total: number }
  latency: { average: number, p50: number, p99: number, max: number }
  '2xx': number
  non2xx: number
  errors: number
  timeouts: number
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
  extra: { log_level: 'info', heartbeat_timeout: 60, security: { rate_limit_guest: 1_000_000_000, rate_limit_read: 1_000_000, rate_limit_admin: 100_000 } }
})
let failed = false
const service = await startService(config, { entry: serviceEntry(args.dist) })
try {
  const url = `http://127.0.0.1:${port}/api/v1/heartbeat?seq=1&status=ok`
  console.log(`heartbeat throughput: service (${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}) on test:///default, autocannon -c ${connections} -d ${duration}`)
  console.log(`before: ${loadNote()}`)
  await autocannon(url, connections, 2) // warm-up (JIT, connections), not reported
  const r = await autocannon(url, connections, duration)
  console.log(`  requests/s: ${Math.round(r.requests.average)} (total ${r.requests.total}; 2xx ${r['2xx']}, non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts})`)
  console.log(`  latency: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, mean ${r.latency.average} ms, max ${r.latency.max} ms`)
  const hb = await service.get('/api/v1/heartbeat/status')
  console.log(`  the watchdog counted ${hb.heartbeats_total} heartbeats; state ${hb.state}`)
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  await service.stop()
  await removeServiceConfig(config)
}
process.exit(failed ? 1 : 0)
