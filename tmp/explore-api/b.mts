import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '/work/main/src/app.ts'
import { parseConfig } from '/work/main/src/config/load.ts'
import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const t0 = Date.now()
const app = await buildApp({ config: parseConfig({ data_dir: mkdtempSync(join(tmpdir(), 'x-')) }, {}), hypervisor: openHypervisor('qemu:///system?socket=/nonexistent/libvirt-sock', { reconnect: false }) })
await app.ready()
console.log('ready in', Date.now() - t0)
const show = async (o: any) => { const r = await app.inject(o); console.log(o.method ?? 'GET', o.url, r.statusCode, r.body.slice(0, 600)) }
await show({ url: '/api/v1/status' })
await show({ url: '/api/v1/snapshots' })
await show({ url: '/api/v1/snapshot/create' })
await show({ url: '/api/v1/snapshot/rollback' })
await show({ method: 'DELETE', url: '/api/v1/snapshot/ready' })
await show({ method: 'POST', url: '/api/v1/revert' })
await show({ url: '/api/v1/vm/stop' })
await show({ url: '/api/v1/vm/start' })
await show({ url: '/api/v1/heartbeat' })
await show({ url: '/api/v1/revert/request' })
await new Promise(r => setTimeout(r, 500))
await show({ url: '/api/v1/status' })
await show({ url: '/api/v1/events' })
await app.close()
