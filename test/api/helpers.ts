// Assertion helpers for the API tests; the app itself comes from test/helpers/app.ts (build).
import type { Test } from 'tap'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'

export { build, T0, UNREACHABLE_URI, type Built } from '../helpers/app.ts'

/** A guest on libvirt's default network (the default security.guest_networks). */
export const GUEST = { remoteAddress: '192.168.122.50' } as const
export { scratchDir } from '../helpers/scratch.ts'

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

/** Asserts the error envelope `{ error: { code, message }, detail }` with this status and code (`detail`: the message, as EVC's clients read it). */
export function assertError (t: Test, r: { status: number, body: any, res: LightMyRequestResponse }, status: number, code: string, message?: RegExp): void {
  t.equal(r.status, status, `status ${status} (${r.res.body.slice(0, 300)})`)
  t.match(r.res.headers['content-type'], /^application\/json/, 'error bodies are JSON')
  t.equal(r.body?.error?.code, code, `code ${code}`)
  t.type(r.body?.error?.message, 'string')
  t.ok((r.body?.error?.message ?? '').length > 0, 'a human message')
  t.equal(r.body?.detail, r.body?.error?.message, 'detail: the message again (EVC\'s web UI shows it)')
  if (message) t.match(r.body?.error?.message, message)
}

/**
 * Waits in real time for a condition that depends on libvirt work running in the background
 * (the watchdog's action queue), polling every 10 ms. The bound only catches a hang: the fake
 * clock does not move meanwhile, so nothing becomes due while it waits.
 */
export async function until<T> (what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
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
