import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildApp } from '/work/main/src/app.ts'
import { parseConfig } from '/work/main/src/config/load.ts'
import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const app = await buildApp({ logger: pino({ level: 'warn' }), config: parseConfig({ data_dir: mkdtempSync(join(tmpdir(), 'x-')) }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
await app.ready()
const show = async (o: any) => { const r = await app.inject(o); console.log(o.method ?? 'GET', o.url.slice(0, 100), r.statusCode, r.body.slice(0, 300)) }
await show({ url: '/ui/$(id)' })
await show({ url: '/ui/a/b' })
await show({ url: '/ui/x' + 'x'.repeat(300) })
await show({ url: '/ui//sXVBT2K/$(id)' })
await show({ url: '/ui/..%2f..%2fetc/passwd' })
await show({ url: '/ui/nope.js' })
await show({ url: '/docs/nope' })
await show({ url: '/docs' })
await app.close()
