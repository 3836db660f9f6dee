// Many VMs on one host: how the service's cost grows with N (issue 15, part 1). For each N, a
// node file for libvirt's test driver with N running domains (each with a `ready` snapshot), the
// real service (a child process) watching all N, and a load generator in this process sending
// every VM one heartbeat a second (GET /api/v1/heartbeat?vm=NAME, keep-alive, spread over the
// second). A seeded 1 % of the VMs (at least one) stop beating at a random moment. Prints per N:
// the service's CPU (% of one core), RSS and private memory, deadline → revert started for the
// stopped ones (the audit trail's `lateByMs`), reverts of VMs that never stopped (must be 0),
// p99 latency of GET /api/v1/status and /api/v1/vms, and CPU per heartbeat. No guest, no
// libvirtd: the test driver runs inside the service. Prints numbers, no pass/fail.
//   npm run bench:scale -- [--n 1,10,50,200] [--seconds 40] [--timeout 5] [--seed 1] [--check-interval 5] [--stop-percent 1] [--schedule] [--dist] [--profile DIR]
// The first half of each window is heartbeats only (CPU per heartbeat); the second half also
// polls /status and /vms (each 5 times a second, one at a time) for their latency.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { mulberry32 } from '../harness/prng.ts'
import { freePort, removeServiceConfig, startService, writeServiceConfig, type ServiceProcess } from '../harness/service.ts'
import { benchArgs, benchVmName as vmName, CLK_TCK, cpuTicks, loadNote, reportFailure, serviceEntry, statusKiB, testDriverNodeXml } from './lib.ts'

const args = benchArgs(1, { n: { type: 'string' }, seconds: { type: 'string' }, timeout: { type: 'string' }, seed: { type: 'string' }, profile: { type: 'string' }, 'check-interval': { type: 'string' }, 'stop-percent': { type: 'string' }, schedule: { type: 'boolean' } })
// The share of VMs that stop beating (at least one): 1 % as the issue asks; more for a firmer p99 of the lag.
const stopPercent = Number(args.values['stop-percent'] ?? 1)
if (!(stopPercent > 0 && stopPercent <= 50)) throw new Error(`--stop-percent must be above 0 and at most 50, got ${String(args.values['stop-percent'])}`)
// heartbeat_check_interval: each VM's safety-net state poll (production default 5 s).
const checkIntervalS = Number(args.values['check-interval'] ?? 5)
if (!(checkIntervalS >= 0.05 && checkIntervalS <= 3600)) throw new Error(`--check-interval must be 0.05..3600 s, got ${String(args.values['check-interval'])}`)
// --profile DIR: the service writes a V8 CPU profile (node --cpu-prof) there when it stops.
const profileDir = typeof args.values.profile === 'string' ? args.values.profile : null
const sizes = String(args.values.n ?? '1,10,50,200').split(',').map(Number)
const seconds = Number(args.values.seconds ?? 40)
const timeoutS = Number(args.values.timeout ?? 5)
const seed = Number(args.values.seed ?? 1)
if (!sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= 2000)) throw new Error(`--n must be a list of whole numbers 1..2000, got ${String(args.values.n)}`)
if (!(seconds >= 10 && seconds <= 3600)) throw new Error(`--seconds must be 10..3600, got ${String(args.values.seconds)}`)
if (!(Number.isInteger(timeoutS) && timeoutS >= 1 && 3 * timeoutS < seconds)) throw new Error(`--timeout must be a whole number of seconds >= 1 and below a third of --seconds, got ${String(args.values.timeout)}`)
if (!Number.isInteger(seed)) throw new Error(`--seed must be a whole number, got ${String(args.values.seed)}`)

const WARMUP_MS = 3000

/** Nearest-rank quantile. */
function q (samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN
  const s = [...samples].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!
}

const agent = new Agent({ keepAlive: true, maxSockets: 32 })
/** GET on the service; resolves with status code and the time it took (ms). */
function get (port: number, path: string): Promise<{ status: number, ms: number, body: string }> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)))
    req.on('error', reject)
    req.end()
  })
}

interface Row {
  n: number
  cpuBeatsPct: number
  cpuAllPct: number
  rssMiB: number
  rssMaxMiB: number
  anonMiB: number
  lag: number[]
  stopped: number
  detected: number
  wrong: number
  statusP99: number
  vmsP99: number
  beats: number
  beatErrors: number
  usPerBeat: number
  /** CPU (ms) the service used from its spawn to the end of the warm-up: start-up and every VM's first beats. */
  startCpuMs: number
  load: string
}

async function runOne (n: number): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'kvw-bench-scale-'))
  const nodeFile = join(dir, 'node.xml')
  await writeFile(nodeFile, testDriverNodeXml(n))
  const port = await freePort()
  const config = await writeServiceConfig({
    port,
    vmName: vmName(0),
    dir,
    libvirtUri: `test://${nodeFile}`,
    extra: {
      log_level: 'info',
      heartbeat_timeout: timeoutS,
      startup_grace: 60,
      // A stopped VM stays silent after its revert: one revert each within the window.
      post_revert_grace: 3600,
      heartbeat_check_interval: checkIntervalS,
      vms: Array.from({ length: n - 1 }, (_, i) => ({ name: vmName(i + 1) })),
      // --schedule: opening hours for every VM (open all day, so nothing closes during the run): the
      // availability figures of /vms and /metrics then work out opening hours in the time zone.
      ...(args.values.schedule === true ? { timezone: 'Europe/Berlin', schedule: { hours: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => [d, '00:00-12:00, 12:00-24:00'])) } } : {})
    }
  })
  const rand = mulberry32(seed * 1000 + n)
  const stopCount = Math.max(1, Math.round(n * stopPercent / 100))
  const stopAt = new Map<number, number>() // VM index → ms after the window's start
  while (stopAt.size < stopCount) {
    const i = Math.floor(rand() * n)
    if (!stopAt.has(i)) stopAt.set(i, WARMUP_MS + Math.floor(rand() * (seconds * 1000 - 2 * timeoutS * 1000 - WARMUP_MS)))
  }

  let service: ServiceProcess | null = null
  try {
    const entry = [...(profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), ...serviceEntry(args.dist)]
    service = await startService(config, { entry, timeoutMs: 120_000 })
    const pid = service.pid
    const t0 = performance.now()
    let beats = 0
    let beatErrors = 0
    const lastBeatAt = new Map<number, number>() // Date.now() the last answered beat was sent
    const seq = new Array<number>(n).fill(0)
    const generatorState = { running: true }
    // Heartbeats: VM i beats at i/N of each second.
    const generator = (async () => {
      let round = 0
      while (generatorState.running) {
        const roundStart = t0 + round * 1000
        for (let i = 0; i < n && generatorState.running; i++) {
          const due = roundStart + (i * 1000) / n
          const wait = due - performance.now()
          if (wait > 1) await sleep(wait)
          const stop = stopAt.get(i)
          if (stop !== undefined && due - t0 >= stop) continue
          const sentAt = Date.now()
          get(port, `/api/v1/heartbeat?vm=${vmName(i)}&seq=${++seq[i]!}&status=ok`).then((r) => {
            if (r.status === 200) { beats++; lastBeatAt.set(i, sentAt) } else beatErrors++
          }, () => { beatErrors++ })
        }
        round++
      }
    })()

    await sleep(WARMUP_MS)
    const windowMs = seconds * 1000 - WARMUP_MS
    const half = windowMs / 2
    const rss: number[] = []
    const anon: number[] = []
    const sampler = setInterval(() => { rss.push(statusKiB(pid, 'VmRSS')); anon.push(statusKiB(pid, 'RssAnon')) }, 1000)
    const cpu0 = cpuTicks(pid)
    const beats0 = beats
    const w0 = performance.now()
    await sleep(half)
    const cpu1 = cpuTicks(pid)
    const beats1 = beats
    const w1 = performance.now()
    // Second half: also poll the views, each five times a second, one request at a time.
    const statusMs: number[] = []
    const vmsMs: number[] = []
    let pollErrors = 0
    const poll = async (path: string, into: number[]) => {
      const end = w1 + half
      while (performance.now() < end) {
        const started = performance.now()
        try {
          const r = await get(port, path)
          if (r.status === 200) into.push(r.ms); else pollErrors++
        } catch { pollErrors++ }
        const rest = 200 - (performance.now() - started)
        if (rest > 0) await sleep(rest)
      }
    }
    await Promise.all([poll('/api/v1/status', statusMs), poll('/api/v1/vms', vmsMs)])
    const cpu2 = cpuTicks(pid)
    const w2 = performance.now()
    clearInterval(sampler)
    generatorState.running = false
    await generator
    await sleep(200)

    const reverts = await service.events('revert_started')
    const stoppedNames = new Set([...stopAt.keys()].map(vmName))
    const lag: number[] = []
    const firstRevert = new Map<string, typeof reverts[number]>()
    for (const e of [...reverts].reverse()) if (!firstRevert.has(e.vm)) firstRevert.set(e.vm, e)
    for (const [vm, e] of firstRevert) if (stoppedNames.has(vm) && typeof e.lateByMs === 'number') lag.push(e.lateByMs)
    const wrong = reverts.filter((e) => !stoppedNames.has(e.vm)).length
    if (pollErrors > 0) console.log(`  (N=${n}: ${pollErrors} view requests failed)`)
    console.log(`  (N=${n}: ${statusMs.length} /status and ${vmsMs.length} /vms requests answered while polling)`)
    const beatsWindow = beats1 - beats0
    const cpuBeatsS = (cpu1 - cpu0) / CLK_TCK
    return {
      n,
      cpuBeatsPct: 100 * cpuBeatsS / ((w1 - w0) / 1000),
      cpuAllPct: 100 * ((cpu2 - cpu0) / CLK_TCK) / ((w2 - w0) / 1000),
      rssMiB: q(rss, 0.5) / 1024,
      rssMaxMiB: Math.max(...rss) / 1024,
      anonMiB: q(anon, 0.5) / 1024,
      lag,
      stopped: stopCount,
      detected: lag.length,
      wrong,
      statusP99: q(statusMs, 0.99),
      vmsP99: q(vmsMs, 0.99),
      beats: beatsWindow,
      beatErrors,
      usPerBeat: beatsWindow > 0 ? 1e6 * cpuBeatsS / beatsWindow : NaN,
      startCpuMs: cpu0 * 1000 / CLK_TCK,
      load: loadNote()
    }
  } catch (err) {
    reportFailure(err, service)
    throw err
  } finally {
    await service?.stop()
    await removeServiceConfig(config)
    await rm(dir, { recursive: true, force: true })
  }
}

console.log(`scale: service (${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}) on the test driver, N = ${sizes.join(', ')}, ${seconds} s each, heartbeat_timeout ${timeoutS} s, 1 beat/s per VM, heartbeat_check_interval ${checkIntervalS} s, ${stopPercent} % of the VMs stop (at least one), seed ${seed}${args.values.schedule === true ? ', opening hours (all day) for every VM' : ''}`)
console.log(`before: ${loadNote()}`)
const rows: Row[] = []
let failed = false
for (const n of sizes) {
  try {
    const row = await runOne(n)
    rows.push(row)
    const f = (x: number, d = 0) => Number.isNaN(x) ? '-' : x.toFixed(d)
    console.log(`N=${n}: CPU ${f(row.cpuBeatsPct, 1)} % (beats only) / ${f(row.cpuAllPct, 1)} % (with view polling) of one core; RSS ${f(row.rssMiB)} MiB (max ${f(row.rssMaxMiB)}), private ${f(row.anonMiB)} MiB; ` +
      `deadline → revert started median ${f(q(row.lag, 0.5))} p99 ${f(q(row.lag, 0.99))} max ${f(Math.max(...row.lag))} ms (${row.detected}/${row.stopped} stopped VMs reverted); wrong reverts ${row.wrong}; ` +
      `p99 /status ${f(row.statusP99, 1)} ms, /vms ${f(row.vmsP99, 1)} ms; ${row.beats} beats in the first half (${row.beatErrors} failed in the run), ${f(row.usPerBeat)} µs CPU per beat; CPU to start and first beats ${f(row.startCpuMs)} ms; ${row.load}`)
  } catch (err) {
    failed = true
    console.error(`N=${n} failed: ${err instanceof Error ? err.message : String(err)}`)
  }
}
console.log('\n| N | CPU % (beats / +views) | RSS median (max) MiB | private MiB | deadline→revert median / p99 / max ms | reverted | wrong | p99 /status ms | p99 /vms ms | µs CPU / beat | CPU ms to start + first beats |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of rows) {
  const f = (x: number, d = 0) => Number.isNaN(x) || !Number.isFinite(x) ? '-' : x.toFixed(d)
  console.log(`| ${r.n} | ${f(r.cpuBeatsPct, 1)} / ${f(r.cpuAllPct, 1)} | ${f(r.rssMiB)} (${f(r.rssMaxMiB)}) | ${f(r.anonMiB)} | ${f(q(r.lag, 0.5))} / ${f(q(r.lag, 0.99))} / ${f(Math.max(...r.lag))} | ${r.detected}/${r.stopped} | ${r.wrong} | ${f(r.statusP99, 1)} | ${f(r.vmsP99, 1)} | ${f(r.usPerBeat)} | ${f(r.startCpuMs)} |`)
}
console.log(`after: ${loadNote()}`)
agent.destroy()
process.exit(failed ? 1 : 0)
