// Throughput of the heartbeat endpoint, and what a flood costs: autocannon (100 connections,
// 10 s) against the service on libvirt's in-process test:///default driver (no VM needed), with
// the DEFAULT guest rate limit (600 a minute per VM and address): past it every heartbeat is
// still counted and answered 429. Prints requests/s, latency, the service's CPU time per request
// and the log lines the flood caused. --guest-limit N raises the limit (every request answered
// 200: the full path). Prints numbers, no pass/fail.
// --tool wrk: wrk (Debian `wrk`, C, its own process; -t2 --latency by default) instead of
// autocannon, for the tail: p50/p90/p99/p99.9 and max from wrk's own histogram (a Lua done()
// hook prints them), plus where the service's main thread spent the run (/proc schedstat: on a
// CPU vs runnable but waiting for one) and, with --node-flags='--trace-gc', its GC pauses.
// Requests come from 127.0.0.1, listed as a guest network by writeServiceConfig (as for a guest
// on QEMU user networking): the guest path, counted per (VM, address) against --guest-limit.
//   node --import tsx bench/throughput.ts [--tool autocannon|wrk] [--connections 100] [--duration 10]
//     [--threads 2] [--guest-limit N] [--node-flags='--max-semi-space-size=1 --trace-gc'] [--dist]
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, REPO_ROOT, removeServiceConfig, startService, writeServiceConfig } from '../harness/service.ts'
import { benchArgs, loadNote, serviceEntry } from './lib.ts'

const args = benchArgs(1, {
  tool: { type: 'string' },
  connections: { type: 'string' },
  duration: { type: 'string' },
  threads: { type: 'string' },
  'guest-limit': { type: 'string' },
  'node-flags': { type: 'string' }
})
const tool = args.values.tool ?? 'autocannon'
if (tool !== 'autocannon' && tool !== 'wrk') throw new Error(`--tool must be autocannon or wrk, got ${String(tool)}`)
const threads = Number(args.values.threads ?? 2)
if (!(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new Error(`--threads must be 1..64, got ${String(args.values.threads)}`)
// V8/node options for the service process, e.g. '--max-semi-space-size=1 --trace-gc' (to weigh them).
const nodeFlags = typeof args.values['node-flags'] === 'string' ? args.values['node-flags'].split(/\s+/).filter((f) => f !== '') : []
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

interface WrkResult {
  requests: number
  durationS: number
  /** Non-2xx/3xx answers; connect, read, write errors and timeouts. */
  errors: { status: number, connect: number, read: number, write: number, timeout: number }
  /** Latency in ms (wrk measures µs). */
  latency: { mean: number, stdev: number, p50: number, p90: number, p99: number, p999: number, max: number }
  /** wrk's own CPU time (user + system), null without /usr/bin/time. */
  cpuSeconds: number | null
}

// wrk's done() hook: its latency histogram (µs) as one JSON line after the human-readable report.
const WRK_REPORT_LUA = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

/** wrk as its own process (C, epoll; not this event loop). */
function wrk (url: string, c: number, t: number, d: number): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-wrk-'))
  const script = join(dir, 'report.lua')
  writeFileSync(script, WRK_REPORT_LUA)
  return new Promise<WrkResult>((resolve, reject) => {
    // Through /usr/bin/time (when there) for wrk's own CPU time: on 2 cores, wrk's threads compete with the service.
    const wrkArgs = [`-t${t}`, `-c${c}`, `-d${d}s`, '--latency', '-s', script, url]
    const timed = existsSync('/usr/bin/time')
    execFile(timed ? '/usr/bin/time' : 'wrk', timed ? ['-f', 'WRK_CPU %U %S', 'wrk', ...wrkArgs] : wrkArgs, { maxBuffer: 16 * 1024 * 1024, timeout: (d + 60) * 1000 }, (error, stdout, stderr) => {
      const jsonLine = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '))
      if (error || jsonLine === undefined) {
        reject(new Error(`wrk failed (is Debian's wrk installed?): ${error?.message ?? 'no report'}\n${stdout}${stderr}`))
        return
      }
      const raw = JSON.parse(jsonLine.slice('WRK_JSON '.length)) as { requests: number, duration_us: number, errors: WrkResult['errors'], latency_us: Record<keyof WrkResult['latency'], number> }
      const latency = Object.fromEntries(Object.entries(raw.latency_us).map(([k, v]) => [k, v / 1000])) as WrkResult['latency']
      const cpu = /WRK_CPU ([\d.]+) ([\d.]+)/.exec(stderr)
      resolve({ requests: raw.requests, durationS: raw.duration_us / 1e6, errors: raw.errors, latency, cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : null })
    })
  }).finally(() => rmSync(dir, { recursive: true, force: true }))
}

/** The main thread's time on a CPU and runnable-but-waiting for one so far, in ms (/proc/PID/schedstat). */
function schedMs (pid: number): { running: number, waiting: number } {
  const [running, waiting] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number)
  return { running: running! / 1e6, waiting: waiting! / 1e6 }
}

/** GC pauses in --trace-gc output: "... ms: Scavenge 9.1 (12.3) -> 8.2 (13.3) MB, 1.25 / 0.00 ms ...". */
function gcPauses (text: string): Map<string, number[]> {
  const byKind = new Map<string, number[]>()
  for (const m of text.matchAll(/ms: ([A-Za-z-]+(?: [A-Za-z-]+)*?)(?: \(reduce\))? [\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/g)) {
    const list = byKind.get(m[1]!) ?? []
    list.push(Number(m[2]))
    byKind.set(m[1]!, list)
  }
  return byKind
}

/** The autocannon run as it always was: requests/s, latency, CPU per request, log lines. */
async function runAutocannon (url: string): Promise<void> {
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
}

const port = await freePort()
const config = await writeServiceConfig({
  port,
  vmName: 'test',
  libvirtUri: 'test:///default',
  extra: { log_level: 'info', heartbeat_timeout: 60, security: guestLimit === null ? {} : { rate_limit_guest: guestLimit } }
})
let failed = false
const service = await startService(config, { entry: [...nodeFlags, ...serviceEntry(args.dist)] })
try {
  const url = `http://127.0.0.1:${port}/api/v1/heartbeat?seq=1&status=ok`
  const what = `${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}${nodeFlags.length > 0 ? ` with ${nodeFlags.join(' ')}` : ''}`
  console.log(`heartbeat throughput: service (${what}) on test:///default, ${tool === 'wrk' ? `wrk -t${threads}` : 'autocannon'} -c ${connections} -d ${duration}, guest limit ${guestLimit ?? 'default (600 a minute)'}, from 127.0.0.1 (a guest network: the guest path)`)
  console.log(`before: ${loadNote()}`)
  if (tool === 'wrk') {
    await wrk(url, connections, threads, 2) // warm-up (JIT, connections), not reported
    const before = await service.get('/api/v1/heartbeat/status')
    const cpuBefore = cpuSeconds(service.pid)
    const schedBefore = schedMs(service.pid)
    const gcTextBefore = service.otherOutput()
    const r = await wrk(url, connections, threads, duration)
    const cpu = cpuSeconds(service.pid) - cpuBefore
    const schedAfter = schedMs(service.pid)
    const l = r.latency
    const f = (v: number) => v < 10 ? v.toFixed(2) : v.toFixed(0)
    const answered = r.requests - r.errors.status
    console.log(`  requests/s: ${Math.round(r.requests / r.durationS)} (total ${r.requests}; non-2xx ${r.errors.status}, socket errors connect ${r.errors.connect} read ${r.errors.read} write ${r.errors.write} timeout ${r.errors.timeout}; ${answered} answered 2xx)`)
    console.log(`  latency: p50 ${f(l.p50)} ms, p90 ${f(l.p90)} ms, p99 ${f(l.p99)} ms, p99.9 ${f(l.p999)} ms, max ${f(l.max)} ms (mean ${f(l.mean)}, stdev ${f(l.stdev)})`)
    console.log(`  service CPU: ${cpu.toFixed(2)} s in ${r.durationS.toFixed(1)} s (${Math.round(100 * cpu / r.durationS)} % of a core, all threads), ${r.requests > 0 ? Math.round(1e6 * cpu / r.requests) : '-'} µs per request`)
    if (r.cpuSeconds !== null) console.log(`  wrk's own CPU: ${r.cpuSeconds.toFixed(2)} s (${Math.round(100 * r.cpuSeconds / r.durationS)} % of a core; this machine has ${availableParallelism()} cores)`)
    console.log(`  service main thread: on a CPU ${Math.round(schedAfter.running - schedBefore.running)} ms, runnable but waiting for a CPU ${Math.round(schedAfter.waiting - schedBefore.waiting)} ms (of ${Math.round(1000 * r.durationS)} ms)`)
    if (nodeFlags.includes('--trace-gc')) {
      // The trace of the measured run (plus the two requests around it), from the service's stdout.
      const gcTextAfter = service.otherOutput()
      const pauses = gcPauses(gcTextAfter.startsWith(gcTextBefore) ? gcTextAfter.slice(gcTextBefore.length) : gcTextAfter)
      for (const [kind, list] of pauses) {
        const sorted = [...list].sort((a, b) => a - b)
        console.log(`  GC ${kind}: ${list.length}, ${list.reduce((a, b) => a + b, 0).toFixed(0)} ms in all, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} ms, max ${sorted[sorted.length - 1]!.toFixed(2)} ms`)
      }
      if (pauses.size === 0) console.log('  GC: no pauses parsed from --trace-gc output')
    }
    const hb = await service.get('/api/v1/heartbeat/status')
    console.log(`  the watchdog counted ${hb.heartbeats_total - before.heartbeats_total} heartbeats in the run (wrk sent ${r.requests}); state ${hb.state}`)
  } else {
    await runAutocannon(url)
  }
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  await service.stop()
  await removeServiceConfig(config)
}
process.exit(failed ? 1 : 0)
