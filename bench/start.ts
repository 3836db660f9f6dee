// Start-up and idle memory (issue 15, part 4): process spawned → `GET /api/v1/status` answers 200,
// over several starts, and the idle process's memory a few seconds later. On libvirt's in-process
// test:///default driver (no libvirtd, no guest), so the figure is the service's own: module
// loading, config, app build, listen. Also when the first log line ("starting": all modules of
// cli.ts loaded) appeared. Prints numbers, no pass/fail.
//   npm run bench:start -- [--runs 7] [--idle 10] [--dist] [--node-flags '--max-semi-space-size=1'] [--service-root DIR]
// Each run is a fresh process with a fresh data directory; the first run warms the page cache and
// is not counted. With --dist the service gets a CACHE_DIRECTORY as the systemd unit gives it
// (CacheDirectory=): the warm-up run saves V8's code cache, the counted runs use it, as every
// start of an installed service after its first does. `--code-cache off` measures without.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, REPO_ROOT, removeServiceConfig, writeServiceConfig } from '../harness/service.ts'
import { benchArgs, CLK_TCK, cpuTicks, describe, loadNote, serviceEntry, stats, statusKiB } from './lib.ts'

const args = benchArgs(7, { idle: { type: 'string' }, 'node-flags': { type: 'string' }, 'service-root': { type: 'string' }, 'code-cache': { type: 'string' } })
// --service-root DIR: start the service of another tree (e.g. an older build, with its package.json
// and public/ beside dist/) for a before/after figure, as bench/reconnect.ts does.
const serviceRoot = typeof args.values['service-root'] === 'string' ? args.values['service-root'] : null
const entry = serviceEntry(args.dist, serviceRoot ?? undefined)
// --node-flags '--max-semi-space-size=1 ...': V8/node options for the service process (to weigh them).
const nodeFlags = typeof args.values['node-flags'] === 'string' ? args.values['node-flags'].split(/\s+/).filter((f) => f !== '') : []
const idleS = Number(args.values.idle ?? 10)
const codeCacheOn = args.dist && args.values['code-cache'] !== 'off'
const cacheDir = codeCacheOn ? mkdtempSync(join(tmpdir(), 'kvw-bench-code-cache-')) : null
process.on('exit', () => { if (cacheDir !== null) rmSync(cacheDir, { recursive: true, force: true }) })
if (!(idleS >= 1 && idleS <= 600)) throw new Error(`--idle must be 1..600 s, got ${String(args.values.idle)}`)

/** CPU time (user + system, ms) PID has used: on a busy machine the wall time to answer stretches, this much less. */
const cpuMs = (pid: number): number => cpuTicks(pid) * 1000 / CLK_TCK

/** Proportional set size (shared pages divided among their users), from smaps_rollup. */
function pssKiB (pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return m ? Number(m[1]) : NaN
  } catch { return NaN }
}

console.log(`start: service (${serviceRoot === null ? '' : `${serviceRoot}: `}${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}${nodeFlags.length > 0 ? ` with ${nodeFlags.join(' ')}` : ''}${cacheDir === null ? '' : ', code cache in CACHE_DIRECTORY'}) on test:///default, ${args.runs} starts (+1 warm-up), idle memory after ${idleS} s`)
console.log(`before: ${loadNote()}`)
const toApi: number[] = []
const toFirstLog: number[] = []
const cpuToApi: number[] = []
const rss: number[] = []
const anon: number[] = []
const pss: number[] = []
const cacheStates: string[] = []
let failed = false
for (let run = 0; run <= args.runs; run++) {
  const port = await freePort()
  const config = await writeServiceConfig({ port, vmName: 'test', libvirtUri: 'test:///default', extra: { log_level: 'info', heartbeat_timeout: 60 } })
  // Spawned here (not through startService, which polls every 100 ms): polled every 5 ms, and its
  // CPU time read the moment it answered.
  const spawned = performance.now()
  const spawnedAtMs = Date.now()
  const child = spawn(process.execPath, [...nodeFlags, ...entry, 'serve', '--config', config.file], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(cacheDir === null ? {} : { CACHE_DIRECTORY: cacheDir }) }
  })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
  const exited = once(child, 'exit')
  try {
    let answeredAt = NaN
    let cpuAtAnswer = NaN
    while (Number.isNaN(answeredAt)) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/status`, { signal: AbortSignal.timeout(2000) })
        await res.arrayBuffer()
        if (res.status === 200) {
          answeredAt = performance.now()
          cpuAtAnswer = cpuMs(child.pid!)
        }
      } catch {}
      if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}):\n${out.slice(-3000)}`)
      if (Number.isNaN(answeredAt)) await sleep(5)
      if (performance.now() - spawned > 60_000) throw new Error('the API did not answer within 60 s')
    }
    const firstLine = out.split('\n').map((l) => { try { return JSON.parse(l) as { msg?: string, time?: number, codeCache?: string } } catch { return null } }).find((l) => l?.msg === 'starting')
    if (run === 0 && cacheDir !== null && firstLine?.codeCache !== 'used') {
      // The warm-up start saves the cache a few seconds after it answers (src/server.ts).
      for (let waited = 0; !/code cache (saved|not saved)/.test(out); waited += 100) {
        if (waited > 20_000) throw new Error(`the warm-up start saved no code cache within 20 s:\n${out.slice(-3000)}`)
        await sleep(100)
      }
    }
    if (run > 0) {
      cacheStates.push(firstLine?.codeCache ?? '?')
      toApi.push(answeredAt - spawned)
      cpuToApi.push(cpuAtAnswer)
      if (firstLine?.time !== undefined) toFirstLog.push(firstLine.time - spawnedAtMs)
    }
    if (run === args.runs) {
      await sleep(idleS * 1000)
      const pid = child.pid!
      rss.push(statusKiB(pid, 'VmRSS'))
      anon.push(statusKiB(pid, 'RssAnon'))
      pss.push(pssKiB(pid))
      console.log(`  idle after ${idleS} s: RSS ${(rss[0]! / 1024).toFixed(1)} MiB, private (RssAnon) ${(anon[0]! / 1024).toFixed(1)} MiB, mapped files ${(statusKiB(pid, 'RssFile') / 1024).toFixed(1)} MiB, Pss ${(pss[0]! / 1024).toFixed(1)} MiB`)
    }
  } catch (err) {
    failed = true
    console.error(err)
    break
  } finally {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
    await removeServiceConfig(config)
  }
}
console.log(`  spawn → /api/v1/status 200:        ${describe(stats(toApi))}`)
console.log(`  spawn → first log line ("starting"): ${describe(stats(toFirstLog))}`)
console.log(`  CPU time used by then (user+sys):     ${describe(stats(cpuToApi))}`)
if (args.dist) console.log(`  code cache at the counted starts:   ${[...new Set(cacheStates)].map((s) => `${s} ${cacheStates.filter((x) => x === s).length}`).join(', ')}`)
console.log(`after: ${loadNote()}`)
process.exit(failed ? 1 : 0)
