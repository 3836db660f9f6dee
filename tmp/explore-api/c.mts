import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '/work/main/src/app.ts'
import { parseConfig } from '/work/main/src/config/load.ts'
import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const app = await buildApp({ config: parseConfig({ data_dir: mkdtempSync(join(tmpdir(), 'x-')) }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
await app.ready()
const ev: any[] = []
app.hypervisor.onLifecycle((e) => ev.push(e))
const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => app.inject({ url: '/api/v1/revert/request?reason=burst_' + i })))
console.log(rs.map(r => r.statusCode + ':' + r.json().details?.outcome).join(' '))
await new Promise(r => setTimeout(r, 500))
console.log(ev)
const st = (await app.inject({ url: '/api/v1/status' })).json()
console.log(JSON.stringify(st.watchdog, null, 1))
console.log((await app.inject({ url: '/api/v1/events' })).json().events.map((e: any) => e.kind + ':' + e.reason + ':' + (e.outcome ?? '')))
await app.close()
