// One service per data directory. Two instances on one data_dir would overwrite each other's
// state files and both revert the same VM, so the second must not start. The lock is a file
// created with O_EXCL holding the owner's PID and its start time (from /proc): a lock left by a
// process that died (kill -9, power loss) is recognised as stale even when its PID was reused.
import { readFileSync } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'
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

/** Takes `{dataDir}/kiosk-vm-watchdog.lock`; DataDirLockedError when a live process holds it. */
export async function lockDataDir (dataDir: string, pid = process.pid): Promise<DataDirLock> {
  await ensureDir(dataDir, 'the lock file')
  const path = `${dataDir.replace(/\/+$/, '')}/${LOCK_FILE}`
  const content = `${pid} ${processStartTime(pid) ?? '-'}\n`
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o644)
      try {
        await handle.writeFile(content, 'utf8')
        await handle.sync()
      } finally {
        await handle.close()
      }
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
    const holder = await readHolder(path)
    if (holder !== null && holder.pid !== pid && isAlive(holder.pid)) {
      const started = processStartTime(holder.pid)
      // Same PID, other start time: the PID was reused by an unrelated process after a crash.
      if (holder.startTime === null || started === null || started === holder.startTime) throw new DataDirLockedError(path, holder.pid)
    }
    if (attempt >= 2) throw new StoreError(`cannot take the lock file ${path}: it keeps coming back (another instance starting at the same moment?)`, path)
    // Stale (its owner is gone) or unreadable: remove it and try again.
    await unlink(path).catch(() => {})
  }
}

async function readHolder (path: string): Promise<{ pid: number, startTime: string | null } | null> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return null
  }
  const [pidText, startTime] = text.trim().split(/\s+/)
  const pid = Number(pidText)
  if (!Number.isSafeInteger(pid) || pid <= 0) return null
  return { pid, startTime: startTime === undefined || startTime === '-' ? null : startTime }
}
