import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '/work/main/src/app.ts'
import { parseConfig } from '/work/main/src/config/load.ts'
import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const app = await buildApp({ config: parseConfig({ data_dir: mkdtempSync(join(tmpdir(), 'x-')) }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
await app.ready()
const ev: any[] = []
app.hypervisor.onLifecycle((e) => ev.push(e.type + '/' + e.detailName))
const h = app.hypervisor
const show = async (o: any) => { const r = await app.inject(o); console.log(o.method ?? 'GET', o.url, r.statusCode, r.body.slice(0, 200)) }
await show({ url: '/api/v1/vm/stop' })
await new Promise(r => setTimeout(r, 200))
console.log('after stop', (await h.domainState('test')).state)
await show({ url: '/api/v1/snapshot/create' })
console.log(await h.listSnapshots('test'))
await show({ method: 'POST', url: '/api/v1/vm/start' })
await new Promise(r => setTimeout(r, 300))
console.log('after start', (await h.domainState('test')).state, ev)
const st = (await app.inject({ url: '/api/v1/status' })).json()
console.log(st.vm_state, st.watchdog.state, st.watchdog.last_revert, st.snapshot_problems)
// direct binding: revert to the shutoff snapshot
await app.close()
