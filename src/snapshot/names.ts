// Snapshot names: a base name (`ready`, what config and technicians use) and its revisions
// (`ready~20260101T120000.000Z`, what libvirt holds). `~` is not allowed in base names, so a
// revision name can never be mistaken for a base name, and it needs no escaping in URLs.
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { snapshotNameSchema } from '../names.ts'

export const REVISION_SEPARATOR = '~'
const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/
const REVISION = /^(.+)~(\d{8}T\d{6}\.\d{3}Z)$/

/** `2026-01-01T12:00:00.123Z` → `20260101T120000.123Z`: sortable, unambiguous, valid in any snapshot store. */
export function revisionStamp (ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '')
}

export function revisionName (base: string, ms: number): string {
  return `${base}${REVISION_SEPARATOR}${revisionStamp(ms)}`
}

/** The base name and time of a revision name; null for any other name. */
export function parseRevisionName (name: string): { base: string, time: number } | null {
  const match = REVISION.exec(name)
  if (!match || !snapshotNameSchema.safeParse(match[1]).success) return null
  const parts = STAMP.exec(match[2]!)
  if (!parts) return null
  const [, y, mo, d, h, mi, s, ms] = parts.map(Number) as [number, number, number, number, number, number, number, number]
  const time = Date.UTC(y, mo - 1, d, h, mi, s, ms)
  return revisionStamp(time) === match[2] ? { base: match[1]!, time } : null
}

/** A base name or a revision name: what may name one existing snapshot (delete, check). */
export const snapshotRefSchema = z.string().refine(
  (name) => snapshotNameSchema.safeParse(name).success || parseRevisionName(name) !== null,
  'a snapshot name (letters, digits and _ . + -, max 100, starting with a letter or digit), or a revision name NAME~YYYYMMDDTHHMMSS.mmmZ'
)

/** Validates a base name (config snapshot_name, create, rollback) or throws BAD_SNAPSHOT_NAME. */
export function assertBaseName (name: unknown): string {
  const result = snapshotNameSchema.safeParse(name)
  if (result.success) return result.data
  const hint = typeof name === 'string' && parseRevisionName(name) ? ' (that is a revision name; use its base name)' : ''
  throw new AppError('BAD_SNAPSHOT_NAME', `Snapshot name ${JSON.stringify(name)} is not valid: letters, digits and _ . + - (max 100), starting with a letter or digit${hint}`, { snapshot: String(name) })
}

/** Validates a base or revision name or throws BAD_SNAPSHOT_NAME. */
export function assertSnapshotRef (name: unknown): string {
  if (typeof name === 'string' && snapshotRefSchema.safeParse(name).success) return name
  throw new AppError('BAD_SNAPSHOT_NAME', `Snapshot name ${JSON.stringify(name)} is not valid: a name (letters, digits and _ . + -, max 100) or a revision NAME~YYYYMMDDTHHMMSS.mmmZ`, { snapshot: String(name) })
}
