// One service per data directory. Two instances on one data_dir would overwrite each other's
// state files and both revert the same VM, so the second must not start. The lock is a file
// holding the owner's PID and its start time (from /proc): a lock left by a process that died
// (kill -9, power loss) is recognised as stale even when its PID was reused.
import { readFileSync } from 'node:fs'
import { link, open, readFile, rename, unlink } from 'node:fs/promises'
import { ensureDir, errnoOf, StoreError } from './fs.ts'

export const LOCK_FILE = 'kiosk-vm-watchdog.lock'

/** Another live process holds the data directory. */
export class DataDirLockedError extends Error {
  readonly pid: number
  readonly path: string
  constructor (path: string, pid: number) {
    super(`another kiosk-vm-watchdog (PID ${pid}) already uses this data directory (lock file ${path}); stop it first, or give this one another data_dir`)
    this.name = 'DataDirLockedError'
    this.pid = pid
    this.path = path
  }
}

export interface DataDirLock {
  readonly path: string
  /** Removes the lock file if it is still ours. */
  release (): Promise<void>
}

/** The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or null off Linux. */
export function processStartTime (pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may contain spaces: count from its end.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19] ?? null
  } catch {
    return null
  }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return errnoOf(err) === 'EPERM' // exists, owned by someone else
  }
}

/**
 * Takes `{dataDir}/kiosk-vm-watchdog.lock`; DataDirLockedError when a live process holds it.
 * The lock appears complete or not at all: its content is written to a file of our own first and
 * then hard-linked into place (link fails with EEXIST when a lock exists), so a second starter
 * never reads a lock file that is still empty. A stale lock is renamed away before it is removed,
 * so of two starters that both found it stale only one removes it, never the other's fresh lock.
 */
export async function lockDataDir (dataDir: string, pid = process.pid): Promise<DataDirLock> {
  await ensureDir(dataDir, 'the lock file')
  const path = `${dataDir.replace(/\/+$/, '')}/${LOCK_FILE}`
  const content = `${pid} ${processStartTime(pid) ?? '-'}\n`
  const mine = `${path}.${pid}.tmp`
  const handle = await open(mine, 'w', 0o644).catch((err: unknown) => {
    throw new StoreError(`cannot create the lock file ${mine}: ${errnoOf(err) ?? String(err)}`, mine, { cause: err })
  })
  try {
    await handle.writeFile(content, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(mine, path)
        return {
          path,
          release: async () => {
            const now = await readFile(path, 'utf8').catch(() => null)
            if (now === content) await unlink(path).catch(() => {})
          }
        }
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') {
          throw new StoreError(`cannot create the lock file ${path}: ${errnoOf(err) ?? String(err)}`, path, { cause: err })
        }
      }
      const held = await readFile(path, 'utf8').catch(() => null)
      const holder = held === null ? null : parseHolder(held)
      if (holder !== null && holder.pid !== pid && isAlive(holder.pid)) {
        const started = processStartTime(holder.pid)
        // Same PID, other start time: the PID was reused by an unrelated process after a crash.
        if (holder.startTime === null || started === null || started === holder.startTime) throw new DataDirLockedError(path, holder.pid)
      }
      if (attempt >= 2) throw new StoreError(`cannot take the lock file ${path}: it keeps coming back (another instance starting at the same moment?)`, path)
      if (held !== null) await removeStale(path, held, `${path}.${pid}.stale`)
    }
  } finally {
    await unlink(mine).catch(() => {})
  }
}

/** Removes the lock at `path` only if it still has the stale content `held` (else puts it back). */
async function removeStale (path: string, held: string, aside: string): Promise<void> {
  try {
    await rename(path, aside)
  } catch {
    return // someone else moved it first
  }
  const moved = await readFile(aside, 'utf8').catch(() => null)
  // Between our read and the rename, another starter replaced the stale lock with its own: restore it.
  if (moved !== held) await link(aside, path).catch(() => {})
  await unlink(aside).catch(() => {})
}

function parseHolder (text: string): { pid: number, startTime: string | null } | null {
  const [pidText, startTime] = text.trim().split(/\s+/)
  const pid = Number(pidText)
  if (!Number.isSafeInteger(pid) || pid <= 0) return null
  return { pid, startTime: startTime === undefined || startTime === '-' ? null : startTime }
}
