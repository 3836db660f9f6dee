// CPU per request of the views that walk every VM, in process (issue 15, part 1): the real app
// (buildApp) with N VMs on a test-driver node file, the real clock; every VM beats once, then
// GET /api/v1/vms, GET /api/v1/status?vm= and GET /metrics K times each through app.inject, one at a time.
// Prints the process's CPU time per request (user + system, which moves far less with the
// machine's load than the wall time printed beside it) and the response size. No sockets, no child.
//   node --import tsx bench/views.ts [--n 200] [--requests 200] [--schedule] [--service-root DIR]
// --schedule: opening hours for every VM (a closed Monday, a split Sunday; Europe/Berlin), as a
// museum has them: the availability figures of /vms then work out opening hours per VM.
// --service-root DIR: the app of another checkout (e.g. a copy of the tree before a change).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '../harness/service.ts'
import { benchArgs, benchVmName as vmName, loadNote, testDriverNodeXml } from './lib.ts'

const args = benchArgs(1, { n: { type: 'string' }, requests: { type: 'string' }, schedule: { type: 'boolean' }, 'service-root': { type: 'string' } })
const n = Number(args.values.n ?? 200)
const k = Number(args.values.requests ?? 200)
if (!(Number.isInteger(n) && n >= 1 && n <= 2000)) throw new Error(`--n must be a whole number 1..2000, got ${String(args.values.n)}`)
if (!(Number.isInteger(k) && k >= 1)) throw new Error(`--requests must be a whole number >= 1, got ${String(args.values.requests)}`)
const root = typeof args.values['service-root'] === 'string' ? args.values['service-root'] : REPO_ROOT
const withSchedule = args.values.schedule === true

const { buildApp } = await import(join(root, 'src', 'app.ts')) as typeof import('../src/app.ts')
const { parseConfig } = await import(join(root, 'src', 'config', 'load.ts')) as typeof import('../src/config/load.ts')
const { openHypervisor } = await import(join(root, 'src', 'libvirt', 'index.ts')) as typeof import('../src/libvirt/index.ts')

const dir = await mkdtemp(join(tmpdir(), 'kvw-bench-views-'))
const schedule = { hours: { mon: 'closed', tue: '09:00-18:00', wed: '09:00-18:00', thu: '09:00-20:00', fri: '09:00-18:00', sat: '10:00-18:00', sun: '10:00-13:00, 14:00-18:00' } }
try {
  await writeFile(join(dir, 'node.xml'), testDriverNodeXml(n))
  const config = parseConfig({
    vm_name: vmName(0),
    snapshot_name: 'ready',
    data_dir: join(dir, 'data'),
    log_level: 'warn',
    timezone: 'Europe/Berlin',
    // Nothing reverts during the run: the views are measured, not the watchdog.
    heartbeat_timeout: 600,
    startup_grace: 3600,
    heartbeat_check_interval: 3600,
    ...(withSchedule ? { schedule } : {}),
    vms: Array.from({ length: n - 1 }, (_, i) => ({ name: vmName(i + 1) })),
    security: { guest_networks: ['127.0.0.0/8'], rate_limit_read: 1_000_000, rate_limit_admin: 1_000_000, rate_limit_guest: 1_000_000 }
  }, {})
  const app = await buildApp({ config, hypervisor: openHypervisor(`test://${join(dir, 'node.xml')}`, { reconnect: false }) })
  await app.ready()
  try {
    for (let i = 0; i < n; i++) {
      const r = await app.inject({ url: `/api/v1/heartbeat?vm=${vmName(i)}&seq=1&status=ok` })
      if (r.statusCode !== 200) throw new Error(`heartbeat of ${vmName(i)}: ${r.statusCode} ${r.body}`)
    }
    const measure = async (url: string): Promise<string> => {
      for (let i = 0; i < 20; i++) await app.inject({ url }) // warm-up: compiled code, caches filled
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      let bytes = 0
      for (let i = 0; i < k; i++) {
        const r = await app.inject({ url })
        if (r.statusCode !== 200) throw new Error(`${url}: ${r.statusCode} ${r.body.slice(0, 300)}`)
        bytes = r.body.length
      }
      const cpu = process.cpuUsage(cpu0)
      const wall = performance.now() - t0
      return `${url}: ${((cpu.user + cpu.system) / k / 1000).toFixed(2)} ms CPU per request (wall ${(wall / k).toFixed(2)} ms), ${bytes} bytes`
    }
    console.log(`views: ${root === REPO_ROOT ? 'this tree' : root}, N = ${n}${withSchedule ? ', opening hours for every VM' : ', no schedule'}, ${k} requests each; ${loadNote()}`)
    console.log(`  ${await measure('/api/v1/vms')}`)
    console.log(`  ${await measure(`/api/v1/status?vm=${vmName(Math.floor(n / 2))}`)}`)
    console.log(`  ${await measure('/metrics')}`)
  } finally {
    await app.close()
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
