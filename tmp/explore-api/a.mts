import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '/work/main/src/app.ts'
import { parseConfig } from '/work/main/src/config/load.ts'
import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const app = await buildApp({ config: parseConfig({ data_dir: mkdtempSync(join(tmpdir(), 'x-')) }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
await app.ready()
const show = async (o: any) => { const r = await app.inject(o); console.log(o.method ?? 'GET', o.url, r.statusCode, r.headers['content-type'], r.body.slice(0, 400)) }
await show({ url: '/api/v1/heartbeat?seq=3&status=ok' })
await show({ method: 'POST', url: '/api/v1/heartbeat', payload: { seq: 4, status: 'fine' } })
await show({ url: '/api/v1/heartbeat/status' })
await show({ url: '/api/v1/snapshots' })
await show({ url: '/api/v1/snapshot/create?snapshot_name=bad~name' })
await show({ url: '/api/v1/snapshot/create?snapshot_name=' })
await show({ url: '/api/v1/snapshot/rollback' })
await show({ url: '/api/v1/revert/request?reason=a%3Cb' })
await show({ url: '/api/v1/revert/disable?minutes=-1' })
await show({ url: '/api/v1/revert/disable?minutes=abc' })
await show({ url: '/api/v1/revert/disable?minutes=1e99' })
await show({ url: '/api/v1/events?limit=0' })
await show({ url: '/api/v1/events?limit=5000' })
await show({ url: '/api/v1/nope' })
await show({ method: 'PUT', url: '/api/v1/heartbeat' })
await show({ method: 'POST', url: '/api/v1/heartbeat', payload: '{bad', headers: { 'content-type': 'application/json' } })
await show({ method: 'POST', url: '/api/v1/heartbeat', payload: 'x'.repeat(70000), headers: { 'content-type': 'application/json' } })
await show({ method: 'POST', url: '/api/v1/heartbeat', payload: 'hello', headers: { 'content-type': 'text/plain' } })
await show({ method: 'POST', url: '/api/v1/heartbeat', payload: 'hello', headers: { 'content-type': 'application/xml' } })
await show({ url: '/api/v1/vms/nope/status' })
await show({ url: '/api/v1/vms/test/heartbeat' })
await show({ method: 'DELETE', url: '/api/v1/snapshot/bad~~name' })
await show({ url: '/api/v1/snapshot/delete/' + encodeURIComponent('../etc') })
await show({ url: '/api/v1/status' })
await show({ url: '/api/v1/events?limit=3' })
await show({ url: '/api/v1/vms' })
await app.close()
