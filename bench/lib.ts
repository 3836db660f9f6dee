// Shared by the benchmarks: statistics, argument parsing, which service build to run.
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT, type ServiceProcess } from '../harness/service.ts'

export interface Stats { n: number, median: number, p95: number, max: number, min: number, mean: number }

/** utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat; the name may hold spaces). */
export function cpuTicks (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/** Clock ticks per second of /proc/PID/stat (USER_HZ on Linux). */
export const CLK_TCK = 100

/** A /proc/PID/status field in KiB: VmRSS (all resident), RssAnon (private: heap, stacks), RssFile (mapped files: node's own binary, shared libraries). */
export function statusKiB (pid: number, field: 'VmRSS' | 'RssAnon' | 'RssFile'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : 0
}

/** Nearest-rank statistics of SAMPLES (ms or any unit). */
export function stats (samples: readonly number[]): Stats {
  if (samples.length === 0) return { n: 0, median: NaN, p95: NaN, max: NaN, min: NaN, mean: NaN }
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
  return {
    n: sorted.length,
    median: at(0.5),
    p95: at(0.95),
    max: sorted[sorted.length - 1]!,
    min: sorted[0]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length
  }
}

export const ms = (value: number) => `${Number.isNaN(value) ? '-' : Math.round(value)} ms`

/** "median 1234 ms  p95 1500 ms  max 1600 ms  (n=10)" */
export function describe (s: Stats): string {
  return `median ${ms(s.median).padStart(8)}  p95 ${ms(s.p95).padStart(8)}  max ${ms(s.max).padStart(8)}  min ${ms(s.min).padStart(8)}  (n=${s.n})`
}

export interface BenchArgs {
  runs: number
  /** Run the service from dist/ (`node dist/cli.js`, after `npm run build`) instead of src/ through tsx. */
  dist: boolean
  values: Record<string, string | boolean | undefined>
}

/** --runs N (default defaultRuns), --dist, plus extra string options. */
export function benchArgs (defaultRuns: number, extra: Record<string, { type: 'string' | 'boolean' }> = {}): BenchArgs {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, dist: { type: 'boolean' }, ...extra }, allowPositionals: false })
  const runs = values.runs === undefined ? defaultRuns : Number(values.runs)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number >= 1, got ${String(values.runs)}`)
  const dist = values.dist === true
  if (dist && !existsSync(join(REPO_ROOT, 'dist', 'cli.js'))) throw new Error('--dist: dist/ is missing; run `npm run build` first')
  return { runs, dist, values: values as Record<string, string | boolean | undefined> }
}

/** The node arguments that run the service: src/ through tsx, or dist/ (--dist). */
export function serviceEntry (dist: boolean, root: string = REPO_ROOT): string[] {
  return dist ? [join(root, 'dist', 'cli.js')] : ['--import', 'tsx', join(root, 'src', 'cli.ts')]
}

/** The Nth VM of a test-driver node file made by `testDriverNodeXml` (0-based). */
export const benchVmName = (i: number): string => `kiosk-${String(i + 1).padStart(4, '0')}`

/** A test-driver node file: N running domains (`benchVmName`), each with a current `ready` snapshot (state running). */
export function testDriverNodeXml (n: number): string {
  const domains: string[] = []
  for (let i = 0; i < n; i++) {
    const uuid = `6695eb01-f6a4-8304-79aa-${String(i + 1).padStart(12, '0')}`
    const core = `<name>${benchVmName(i)}</name><uuid>${uuid}</uuid><memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os>`
    domains.push(`  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>${core}
    <test:domainsnapshot><name>ready</name><state>running</state><memory snapshot='internal'/><creationTime>1700000000</creationTime><active>1</active><domain type='test'>${core}</domain></test:domainsnapshot>
  </domain>`)
  }
  return `<node>\n${domains.join('\n')}\n</node>\n`
}

/** Table-ish line: label padded, then text. */
export function line (label: string, text: string): string {
  return `  ${label.padEnd(46)} ${text}`
}

/** "load average 1.2 0.9 0.7 on 2 cores": benchmarks on a shared machine need this next to them. */
export function loadNote (): string {
  const [a, b, c] = loadavg()
  return `load average ${a!.toFixed(2)} ${b!.toFixed(2)} ${c!.toFixed(2)} on ${availableParallelism()} cores`
}

/** Prints why a bench run failed, with the service's last log lines when it was running. */
export function reportFailure (err: unknown, service: ServiceProcess | null | undefined): void {
  console.error(err)
  if (service) console.error(service.logs.slice(-30).map((l) => JSON.stringify(l)).join('\n'))
}
