// For the observers (metrics, SSE stream, alerts): the watchdogs to watch. They come from the
// 'vms' plugin (`app.watchdogs`); an app built without it simply has none to observe. Observers
// only listen to events and read view(); they never drive a watchdog.
import type { FastifyInstance } from 'fastify'
import type { Watchdog } from '../heartbeat/watchdog.ts'

export type { AlertEvent, RevertEvent } from '../heartbeat/watchdog.ts'

export const WATCHDOG_STATES = ['starting', 'healthy', 'late', 'reverting', 'grace', 'maintenance', 'exhausted'] as const

/** The watched VMs' watchdogs by name (empty when the app has no 'vms' plugin). */
export function watchedVms (app: FastifyInstance): Map<string, Watchdog> {
  return app.hasDecorator('watchdogs') ? app.watchdogs : new Map()
}
