// Small file-system helpers shared by the state files and the audit trail.
import { mkdir, open, rename, unlink } from 'node:fs/promises'

/** Anything the store cannot do on disk: names the path and what went wrong. */
export class StoreError extends Error {
  readonly path: string
  /** The errno code (ENOTDIR, EACCES, EROFS, ENOSPC...) when the OS refused. */
  readonly errno: string | undefined

  constructor (message: string, path: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreError'
    this.path = path
    const cause = options?.cause as NodeJS.ErrnoException | undefined
    this.errno = typeof cause?.code === 'string' ? cause.code : undefined
  }
}

export function errnoOf (err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** Creates `dir` (and its parents); a clear StoreError when that is impossible. */
export async function ensureDir (dir: string, purpose: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    const code = errnoOf(err)
    const why = code === 'ENOTDIR' || code === 'EEXIST'
      ? 'a part of the path is a file, not a directory'
      : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EROFS' ? 'read-only file system' : String(err)
    throw new StoreError(`cannot create the directory ${dir} for ${purpose}: ${why} (check data_dir)`, dir, { cause: err })
  }
}

let tmpCounter = 0

/** The temporary file `replaceFile` writes before the rename: TARGET.tmp-PID-N. */
export const REPLACE_TMP = /\.tmp-(\d+)-\d+$/

/**
 * Replaces `target` with `data` whole or not at all: a temporary file beside it (REPLACE_TMP),
 * fsync, rename; the temporary file is removed when a step fails, and the error rethrown. The
 * caller fsyncs the directory when the rename itself must survive a power cut.
 */
export async function replaceFile (target: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = `${target}.tmp-${process.pid}-${++tmpCounter}`
  try {
    const handle = await open(tmp, 'w', mode)
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, target)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}

/**
 * fsync of a directory makes a rename in it durable. Some file systems refuse to fsync a
 * directory (EINVAL, EISDIR, EPERM); the rename is then as durable as that file system allows.
 */
export async function fsyncDir (dir: string): Promise<void> {
  let handle
  try {
    handle = await open(dir, 'r')
    await handle.sync()
  } catch (err) {
    const code = errnoOf(err)
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw err
  } finally {
    await handle?.close()
  }
}
