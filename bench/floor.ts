// The memory floor under the idle-RSS target (issue 15: ≤ 64 MiB): what a node process holds
// before any of the service's own code, step by step. Each step is a fresh `node` process, read
// from /proc a few seconds after it got there; the service's own figure is bench/start.ts's.
//   npm run bench:floor [-- --runs 3] [--settle 5]
// Needs libvirt.so.0 (Debian's libvirt0) and the npm modules (koffi). Prints numbers, no pass/fail.
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { REPO_ROOT } from '../harness/service.ts'
import { benchArgs, loadNote, statusKiB } from './lib.ts'

const args = benchArgs(3, { settle: { type: 'string' } })
const settleS = Number(args.values.settle ?? 5)
if (!(settleS >= 1 && settleS <= 60)) throw new Error(`--settle must be 1..60 s, got ${String(args.values.settle)}`)

// Each step's program: does its part, says "ready", then stays alive until killed.
const KOFFI_LIBVIRT = `import koffi from 'koffi'
const open = koffi.load('libvirt.so.0').func('void *virConnectOpen(const char *name)')
if (open('test:///default') === null) throw new Error('virConnectOpen(test:///default) failed')`
const INTL_ZONE = "new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Berlin', hour: 'numeric' }).format(new Date())"
const STEPS: Array<{ label: string, code: string }> = [
  { label: 'node alone (an idle timer)', code: '' },
  { label: '+ koffi, libvirt.so.0 loaded, test:///default connected', code: KOFFI_LIBVIRT },
  { label: '+ an Intl time zone (config check, schedule, availability)', code: `${KOFFI_LIBVIRT}\n${INTL_ZONE}` }
]

async function measure (code: string): Promise<Record<'VmRSS' | 'RssAnon' | 'RssFile', number>> {
  const program = `${code}\nconsole.log('ready')\nsetInterval(() => {}, 60_000)`
  // From the checkout, so that `import 'koffi'` finds node_modules/.
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
  try {
    for (let waited = 0; !out.includes('ready'); waited += 20) {
      if (child.exitCode !== null || waited > 30_000) throw new Error(`the step did not get ready:\n${out}`)
      await sleep(20)
    }
    await sleep(settleS * 1000)
    const pid = child.pid!
    return { VmRSS: statusKiB(pid, 'VmRSS'), RssAnon: statusKiB(pid, 'RssAnon'), RssFile: statusKiB(pid, 'RssFile') }
  } finally {
    child.kill('SIGTERM')
  }
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`
console.log(`memory floor: fresh node ${process.version} processes, read ${settleS} s after each step, ${args.runs} runs (median)`)
console.log(`before: ${loadNote()}`)
for (const step of STEPS) {
  const runs: Array<Record<'VmRSS' | 'RssAnon' | 'RssFile', number>> = []
  for (let i = 0; i < args.runs; i++) runs.push(await measure(step.code))
  const median = (key: 'VmRSS' | 'RssAnon' | 'RssFile') => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!
  console.log(`  ${step.label.padEnd(62)} RSS ${mib(median('VmRSS')).padStart(9)}  private ${mib(median('RssAnon')).padStart(9)}  files ${mib(median('RssFile')).padStart(9)}`)
}
console.log(`after: ${loadNote()}`)
