// The one way tests build the real app: libvirt's in-process test driver (or an unreachable
// libvirt), a scratch data_dir, app.inject. By default on a fake clock (test/helpers/fake-clock.ts)
// that is both the app's clock and its timers: nothing happens on its own until the test moves
// time with `run(ms)`. Tests that need the wall clock (a browser, a Prometheus scrape) pass
// `time: 'real'`. One app per subtest: two open test:///default connections share snapshots, so
// each subtest closes its app in teardown.
import type { Test } from 'tap'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { parseConfig } from '../../src/config/load.ts'
import { openHypervisor, type LifecycleEvent } from '../../src/libvirt/index.ts'
import type { Clock, TimerPort } from '../../src/ports/index.ts'
import { FakeClock } from './fake-clock.ts'
import { scratchDir } from './scratch.ts'

export const T0 = Date.UTC(2026, 10, 23, 12, 0, 0)
export const TOKEN = 'correct-horse-battery-staple-42'
export const UNREACHABLE_URI = 'qemu:///system?socket=/nonexistent/libvirt-sock'

export interface BuildOptions {
  /** Config keys over the defaults (data_dir is a scratch directory unless given). */
  config?: Record<string, unknown>
  /** Environment variables for the config (KVW_*, VMCTL_*). */
  env?: Record<string, string>
  uri?: string
  logger?: FastifyBaseLogger
  /** 'fake' (default): a FakeClock drives time; 'real': the system clock and real timers. */
  time?: 'fake' | 'real'
  /** A clock and timers of the test's own (e.g. a FakeClock started at another instant). */
  clock?: Clock
  timers?: TimerPort
  /** Adds GET/POST /probe/{guest,admin,read} and GET /probe/none before the app is ready. */
  probes?: boolean
  /** Called before app.ready(): extra routes for a test. */
  beforeReady?: (app: FastifyInstance) => void
  /** Do not close the app in teardown (the test closes it itself, e.g. to restart on the same data_dir). */
  manualClose?: boolean
}

export interface Built {
  app: FastifyInstance
  /** The fake clock, unless time is real or the test gave its own. */
  clock: FakeClock | null
  /** Lifecycle events libvirt sent for any domain since the app started. */
  lifecycle: LifecycleEvent[]
  dataDir: string
  /**
   * Moves the fake clock by `ms` in 50 ms steps; after each step the libvirt work it started
   * (reverts, state reads) finishes. Stops early once `until` holds; fails if it never does.
   */
  run (ms: number, until?: () => boolean): Promise<void>
  /** Waits until every watchdog's queued libvirt work and writes are done. */
  settled (): Promise<void>
}

const STEP_MS = 50

export async function build (t: Test, options: BuildOptions = {}): Promise<Built> {
  const dataDir = (options.config?.data_dir as string | undefined) ?? scratchDir(t)
  const config = parseConfig({ data_dir: dataDir, ...options.config }, options.env ?? {})
  const fake = options.time === 'real' || options.clock ? null : new FakeClock(T0)
  const clock = options.clock ?? fake
  const timers = options.timers ?? fake
  const app = await buildApp({
    config,
    hypervisor: openHypervisor(options.uri ?? 'test:///default', { reconnect: false }),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(clock ? { clock } : {}),
    ...(timers ? { timers } : {})
  })
  if (!options.manualClose) t.teardown(() => app.close())
  if (options.probes) {
    for (const access of ['guest', 'admin', 'read'] as const) {
      app.route({ method: ['GET', 'POST'], url: `/probe/${access}`, config: { access }, handler: async () => ({ ok: access }) })
    }
    app.get('/probe/none', async () => ({ ok: 'none' }))
  }
  options.beforeReady?.(app)
  await app.ready()
  const lifecycle: LifecycleEvent[] = []
  t.teardown(app.hypervisor.onLifecycle((e) => lifecycle.push(e)))

  const settled = async (): Promise<void> => {
    await Promise.all([...app.watchdogs.values()].map((w) => w.settled()))
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  const run = async (ms: number, until?: () => boolean): Promise<void> => {
    if (fake === null) throw new Error('run() moves the fake clock: this app runs on real time')
    for (let moved = 0; moved < ms; moved += STEP_MS) {
      fake.advance(Math.min(STEP_MS, ms - moved))
      await settled()
      if (until?.()) return
    }
    if (until && !until()) throw new Error(`not reached within ${ms} ms of fake time`)
  }
  return { app, clock: fake, lifecycle, dataDir, run, settled }
}
