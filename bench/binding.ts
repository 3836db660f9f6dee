// Median latency of one domain-state call: through our binding vs. one `virsh` process per call
// (what exhibition-vm-controller did). Prints numbers; no pass/fail.
//   npm run bench            (or: node --import tsx bench/binding.ts [iterations])
import { execFileSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { openHypervisor } from '../src/libvirt/index.ts'

const iterations = Number(process.argv[2] ?? 2000)
const virshIterations = Math.min(100, iterations)

function stats (samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { median: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1]! }
}
const fmt = (ms: number) => `${ms < 1 ? ms.toFixed(3) : ms.toFixed(1)} ms`

const h = openHypervisor('test:///default', { reconnect: false })
await h.connect()
for (let i = 0; i < 100; i++) await h.domainState('test') // warm-up
const binding: number[] = []
for (let i = 0; i < iterations; i++) {
  const t0 = performance.now()
  await h.domainState('test')
  binding.push(performance.now() - t0)
}
await h.close()

const virsh: number[] = []
for (let i = 0; i < virshIterations; i++) {
  const t0 = performance.now()
  execFileSync('virsh', ['-c', 'test:///default', 'domstate', 'test'], { stdio: 'pipe' })
  virsh.push(performance.now() - t0)
}

const b = stats(binding)
const v = stats(virsh)
console.log(`domain state on test:///default (${iterations} binding calls, ${virshIterations} virsh processes)`)
console.log(`  binding (koffi, off the event loop): median ${fmt(b.median)}  p95 ${fmt(b.p95)}  max ${fmt(b.max)}`)
console.log(`  virsh process per call:              median ${fmt(v.median)}  p95 ${fmt(v.p95)}  max ${fmt(v.max)}`)
console.log(`  ratio of medians: ${(v.median / b.median).toFixed(0)}x`)
