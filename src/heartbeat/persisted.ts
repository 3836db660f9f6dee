// The part of a watchdog's state that survives a restart of the service, as a zod schema so a
// state file damaged or edited by hand is rejected with a message naming the field, not half-used.
import { z } from 'zod'

export const MAINTENANCE_REASONS = ['technician', 'config', 'stopped', 'closed'] as const
export type MaintenanceReason = typeof MAINTENANCE_REASONS[number]

export const REVERT_SOURCES = ['auto', 'guest', 'technician', 'schedule'] as const
export type RevertSource = typeof REVERT_SOURCES[number]

/**
 * What became of the last revert: in_progress (libvirt call running), retrying (a call failed,
 * the next attempt waits for its backoff), awaiting_heartbeat (done, grace running), recovered
 * (the first heartbeat came), no_heartbeat (the grace passed without one), cancelled (a pending
 * retry was dropped: heartbeats came back, maintenance or a stop), abandoned (a failed attempt
 * is not retried because maintenance began meanwhile).
 */
export const REVERT_OUTCOMES = ['in_progress', 'retrying', 'awaiting_heartbeat', 'recovered', 'no_heartbeat', 'cancelled', 'abandoned'] as const
export type RevertOutcome = typeof REVERT_OUTCOMES[number]

const epochMs = z.number().finite().min(0)

export interface Maintenance {
  reason: MaintenanceReason
  /** Epoch ms when it ends on its own; null: until someone ends it. */
  until: number | null
  since: number
  /** Free text from the technician. */
  note: string | null
  /**
   * The standing maintenance (technician or config) that a temporary one (closed, stopped) was
   * laid over; it comes back when the temporary one ends.
   */
  previous: Maintenance | null
}

export const maintenanceSchema: z.ZodType<Maintenance> = z.lazy(() => z.object({
  reason: z.enum(MAINTENANCE_REASONS),
  until: epochMs.nullable(),
  since: epochMs,
  note: z.string().max(500).nullable(),
  previous: maintenanceSchema.nullable()
}))

export const lastRevertSchema = z.object({
  at: epochMs,
  reason: z.string(),
  source: z.enum(REVERT_SOURCES),
  escalate: z.boolean(),
  attempts: z.int().min(1),
  /** The successful libvirt call's duration. */
  durationMs: z.number().nullable(),
  outcome: z.enum(REVERT_OUTCOMES),
  /** From the decision to revert to the first heartbeat after it. */
  recoveryMs: z.number().nullable(),
  error: z.string().nullable()
})
export type LastRevert = z.infer<typeof lastRevertSchema>

export const countersSchema = z.object({
  /** Reverts started (retries of one revert are one revert). */
  reverts: z.int().min(0),
  byReason: z.record(z.string(), z.int().min(0)),
  bySource: z.record(z.string(), z.int().min(0)),
  /** How reverts ended (recovered, no_heartbeat, cancelled, abandoned) plus failed libvirt attempts. */
  outcomes: z.record(z.string(), z.int().min(0)),
  /** Revert requests by their answer (started, coalesced, refused). */
  requests: z.record(z.string(), z.int().min(0)),
  escalations: z.int().min(0),
  exhaustions: z.int().min(0)
})
export type Counters = z.infer<typeof countersSchema>

export const persistedWatchdogStateSchema = z.object({
  version: z.literal(1),
  maintenance: maintenanceSchema.nullable(),
  exhausted: z.object({ at: epochMs, reason: z.string() }).nullable(),
  escalated: z.boolean(),
  recentReverts: z.array(epochMs).max(10_000),
  lastGuestRevertAt: epochMs.nullable(),
  counters: countersSchema,
  lastRevert: lastRevertSchema.nullable(),
  /**
   * The adaptive detector's memory of this guest's heartbeat gaps (counts per bucket, per epoch),
   * kept across restarts; its shape is checked where it is restored (heartbeat/machine/detector.ts).
   */
  gapWindow: z.object({
    epochs: z.array(z.array(z.int().min(0)).max(1000)).max(1000),
    filling: z.int().min(0),
    learnedMs: z.number().finite().min(0)
  }).optional()
})

/** JSON-serialisable; what a VM's state file holds. */
export type PersistedWatchdogState = z.infer<typeof persistedWatchdogStateSchema>

export function emptyCounters (): Counters {
  return { reverts: 0, byReason: {}, bySource: {}, outcomes: {}, requests: {}, escalations: 0, exhaustions: 0 }
}

/** Checks a loaded state document; throws an Error whose message names each bad field. */
export function parsePersistedState (value: unknown): PersistedWatchdogState {
  const result = persistedWatchdogStateSchema.safeParse(value)
  if (result.success) return result.data
  const problems = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`)
  throw new Error(`persisted watchdog state is not valid: ${problems.join('; ')}`)
}
