// Builds the real app (libvirt's in-process test driver, a scratch data_dir) for the security,
// metrics, SSE and dashboard tests, with a few probe routes of each access class.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { parseConfig } from '../../src/config/load.ts'
import { openHypervisor } from '../../src/libvirt/index.ts'

export const TOKEN = 'correct-horse-battery-staple-42'

export interface TestAppOptions {
  config?: Record<string, unknown>
  logger?: FastifyBaseLogger
  /** Adds GET /probe/{guest,admin,read,none} before the app is ready. */
  probes?: boolean
  clock?: { now (): number }
}

export async function testApp (t: Test, options: TestAppOptions = {}): Promise<FastifyInstance> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kvw-test-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const config = parseConfig({ data_dir: dataDir, startup_grace: 3600, ...options.config }, {})
  const app = await buildApp({
    config,
    hypervisor: openHypervisor('test:///default', { reconnect: false }),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.clock ? { clock: options.clock } : {})
  })
  if (options.probes) {
    for (const access of ['guest', 'admin', 'read'] as const) {
      app.route({ method: ['GET', 'POST'], url: `/probe/${access}`, config: { access }, handler: async () => ({ ok: access }) })
    }
    app.get('/probe/none', async () => ({ ok: 'none' }))
  }
  t.teardown(() => app.close())
  await app.ready()
  return app
}
