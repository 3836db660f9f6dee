// Idle cost of the service watching a real QEMU guest that heartbeats once a second: CPU (% of one
// core, from /proc/PID/stat utime+stime over the window) and RSS (/proc/PID/status VmRSS, sampled
// once a second) of the service process and of its child processes, if any.
// Prints numbers, no pass/fail.
//   node --import tsx bench/idle.ts [--seconds 60] [--dist]
// --dist measures `node dist/cli.js` (what production runs; `npm run build` first); without it,
// src/ through tsx (its loader costs memory of its own).
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { sleep } from '../harness/guest.ts'
import { ServiceRig } from '../harness/service.ts'
import { benchArgs, cpuTicks, loadNote, serviceEntry, stats, statusKiB } from './lib.ts'

const args = benchArgs(1, { seconds: { type: 'string' } })
const seconds = args.values.seconds === undefined ? 60 : Number(args.values.seconds)
if (!(seconds >= 5 && seconds <= 3600)) throw new Error(`--seconds must be 5..3600, got ${String(args.values.seconds)}`)
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())

const rssKiB = (pid: number) => statusKiB(pid, 'VmRSS')

/** PIDs whose parent is PID, recursively. */
function descendants (pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(entry), ...descendants(Number(entry)))
    } catch {} // gone meanwhile
  }
  return out
}

// Production defaults (config.yaml) for everything that runs on its own: deadlines, the state
// poll, libvirt keepalive, logging.
const PRODUCTION_TIMING = {
  log_level: 'info',
  heartbeat_timeout: 15,
  startup_grace: 60,
  post_revert_grace: 60,
  heartbeat_check_interval: 5,
  libvirt_keepalive_interval: 5,
  libvirt_keepalive_count: 3,
  libvirt_reconnect_max: 30
}
const rig = new ServiceRig('kvw-bench-idle', { entry: serviceEntry(args.dist), extraConfig: PRODUCTION_TIMING })
let failed = false
try {
  console.log(`idle cost: service (${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}) watching a real TCG guest, 1 heartbeat/s, ${seconds} s window`)
  console.log(`before: ${loadNote()}`)
  await rig.start()
  rig.beats!.stop() // no status polling during the window: the guest's heartbeats only
  const svc = rig.service!
  await sleep(5000) // past start-up work (compiling, first libvirt calls)
  const children = descendants(svc.pid)
  const totalBefore = (await svc.get('/api/v1/heartbeat/status')).heartbeats_total as number
  const t0 = performance.now()
  const cpu0 = cpuTicks(svc.pid)
  const childCpu0 = children.map(cpuTicks)
  const rss: number[] = []
  const anon: number[] = []
  const file: number[] = []
  const childRss: number[] = []
  for (let i = 0; i < seconds; i++) {
    await sleep(1000)
    rss.push(rssKiB(svc.pid))
    anon.push(statusKiB(svc.pid, 'RssAnon'))
    file.push(statusKiB(svc.pid, 'RssFile'))
    childRss.push(children.reduce((sum, pid) => sum + rssKiB(pid), 0))
  }
  const cpu1 = cpuTicks(svc.pid)
  const childCpu1 = children.map(cpuTicks)
  const elapsedS = (performance.now() - t0) / 1000
  const totalAfter = (await svc.get('/api/v1/heartbeat/status')).heartbeats_total as number

  const cpuPercent = ((cpu1 - cpu0) / TICKS) / elapsedS * 100
  const childCpuPercent = (childCpu1.reduce((a, b) => a + b, 0) - childCpu0.reduce((a, b) => a + b, 0)) / TICKS / elapsedS * 100
  const r = stats(rss)
  const mb = (kib: number) => `${(kib / 1024).toFixed(1)} MB`
  console.log(`  heartbeats received in the window: ${totalAfter - totalBefore} in ${elapsedS.toFixed(1)} s`)
  console.log(`  service CPU: ${cpuPercent.toFixed(2)} % of one core (${cpu1 - cpu0} ticks of 1/${TICKS} s)`)
  console.log(`  service RSS: median ${mb(r.median)}, max ${mb(r.max)}, last ${mb(rss.at(-1)!)}`)
  console.log(`    of it private (RssAnon: JS heap, malloc, stacks): median ${mb(stats(anon).median)}, max ${mb(stats(anon).max)}`)
  console.log(`    of it mapped files (RssFile: the node binary, libvirt and its libraries; shared): median ${mb(stats(file).median)}`)
  if (children.length > 0) {
    console.log(`  child processes (${children.map((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).join(', ')}): CPU ${childCpuPercent.toFixed(2)} %, RSS max ${mb(Math.max(...childRss))}`)
  } else {
    console.log('  child processes: none')
  }
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  await rig.close(false, () => {})
}
process.exit(failed ? 1 : 0)
