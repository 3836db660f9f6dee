// The real app for the API tests: libvirt's in-process test driver (or an unreachable libvirt),
// a scratch data_dir, app.inject. One app per subtest: two open test:///default connections
// share snapshots, so each subtest closes its app in teardown.
import type { Test } from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { parseConfig } from '../../src/config/load.ts'
import { openHypervisor, type LifecycleEvent } from '../../src/libvirt/index.ts'
import { scratchDir } from '../helpers/scratch.ts'

export const UNREACHABLE_URI = 'qemu:///system?socket=/nonexistent/libvirt-sock'

export interface ApiAppOptions {
  /** Config keys over the defaults (data_dir is set unless given). */
  config?: Record<string, unknown>
  uri?: string
  clock?: { now (): number }
  /** Called before app.ready(): extra routes for a test. */
  beforeReady?: (app: FastifyInstance) => void
  /** Do not close the app in teardown (the test closes it itself, e.g. to restart on the same data_dir). */
  manualClose?: boolean
}

export interface ApiApp {
  app: FastifyInstance
  /** Lifecycle events libvirt sent for any domain since the app started. */
  lifecycle: LifecycleEvent[]
  dataDir: string
}

export { scratchDir }

export async function apiApp (t: Test, options: ApiAppOptions = {}): Promise<ApiApp> {
  const dataDir = (options.config?.data_dir as string | undefined) ?? scratchDir(t)
  const config = parseConfig({ data_dir: dataDir, ...options.config }, {})
  const app = await buildApp({
    config,
    hypervisor: openHypervisor(options.uri ?? 'test:///default', { reconnect: false }),
    ...(options.clock ? { clock: options.clock } : {})
  })
  if (!options.manualClose) t.teardown(() => app.close())
  options.beforeReady?.(app)
  await app.ready()
  const lifecycle: LifecycleEvent[] = []
  const off = app.hypervisor.onLifecycle((e) => lifecycle.push(e))
  t.teardown(off)
  return { app, lifecycle, dataDir }
}

/** A clock that moves only when the test says so (timers stay real: they are armed from it). */
export function manualClock (start = Date.UTC(2026, 10, 23, 12, 0, 0)): { t: number, now (): number } {
  return { t: start, now () { return this.t } }
}

/** Injects and parses the JSON body (every response of this API is JSON). */
export async function call (app: FastifyInstance, options: InjectOptions | string): Promise<{ res: LightMyRequestResponse, status: number, body: any }> {
  const res = await app.inject(options as InjectOptions)
  let body: unknown
  try {
    body = res.json()
  } catch {
    body = undefined
  }
  return { res, status: res.statusCode, body }
}

/** Asserts the error envelope `{ error: { code, message } }` with this status and code. */
export function assertError (t: Test, r: { status: number, body: any, res: LightMyRequestResponse }, status: number, code: string, message?: RegExp): void {
  t.equal(r.status, status, `status ${status} (${r.res.body.slice(0, 300)})`)
  t.match(r.res.headers['content-type'], /^application\/json/, 'error bodies are JSON')
  t.equal(r.body?.error?.code, code, `code ${code}`)
  t.type(r.body?.error?.message, 'string')
  t.ok((r.body?.error?.message ?? '').length > 0, 'a human message')
  if (message) t.match(r.body?.error?.message, message)
}

/**
 * Waits for a condition that depends on libvirt work running in the background (the watchdog's
 * action queue), polling every 10 ms; fails after `timeoutMs`.
 */
export async function until<T> (what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 3000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== null && value !== false) return value
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Audit entries of one kind, newest first. */
export async function events (app: FastifyInstance, kind?: string, limit = 1000): Promise<Array<Record<string, any>>> {
  const r = await call(app, `/api/v1/events?limit=${limit}${kind ? `&kind=${kind}` : ''}`)
  if (r.status !== 200) throw new Error(`/events answered ${r.status}: ${r.res.body}`)
  return r.body.events
}
