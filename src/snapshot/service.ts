// Snapshots with revisions, on top of the Hypervisor interface. See README.md for the scheme:
// every create() makes a new, immutable snapshot `{name}~{stamp}`; the newest snapshot of a name
// is the active one (what a revert to that name uses); rollback() discards the newest so the
// previous one is active again. All of it lives in libvirt, nothing beside it can disagree.
import { AppError } from '../errors.ts'
import { LibvirtError, snapshotXml, type Hypervisor, type SnapshotInfo } from '../libvirt/index.ts'
import { silentLog, systemClock, type Clock, type Log } from '../ports/index.ts'
import { assertBaseName, assertSnapshotRef, parseRevisionName, revisionName } from './names.ts'

export interface SnapshotServiceOptions {
  hypervisor: Hypervisor
  log?: Pick<Log, 'info' | 'warn'>
  /** Older revisions kept besides the active one (config keep_revisions). */
  keepRevisions: number
  /** Clock for revision names (default: the system clock). */
  clock?: Clock
}

export interface SnapshotEntry extends SnapshotInfo {
  /** The name this snapshot is a version of: `ready` for `ready` and for `ready~20260101T120000.000Z`. */
  base: string
  /** The base name when this is a revision (`name~stamp`), null for a plainly named snapshot. */
  revisionOf: string | null
  /** True for the snapshot a revert to `base` uses: the newest of its base. */
  isActive: boolean
  /** The order among the versions of one base (ms): from the name for revisions, creationTime otherwise. */
  versionTime: number
}

export interface CreateResult {
  /** The base name. */
  name: string
  /** The new snapshot, now the active one. */
  snapshot: string
  /** The snapshot that was active before and is kept as a revision; null when there was none or it was pruned. */
  revision: string | null
  /** Older revisions deleted to keep keep_revisions. */
  pruned: string[]
  /** False when the domain was not running: a revert to it boots the VM from disk. */
  hasMemory: boolean
  /** The snapshot was made, but what comes after it (reading the list back, pruning) failed: why. */
  warning?: string
}

export interface RollbackResult {
  /** The snapshot that is active again. */
  restored: string
  /** The snapshot that was active and is now deleted. */
  discarded: string
}

export interface SnapshotCheck {
  name: string
  domainExists: boolean
  /** The domain's state ('running', 'shutoff', ...), null when the domain does not exist. */
  domainState: string | null
  exists: boolean
  /** The snapshot a revert uses (resolveRevertTarget), null when there is none. */
  target: string | null
  hasMemory: boolean
  /** The state recorded in the target ('running', 'shutoff'...). */
  state: string | null
  /** Seconds since the epoch. */
  creationTime: number | null
  /** Older revisions a rollback could go back to. */
  revisions: number
  /** True when a revert can work: the domain and the snapshot exist. */
  ok: boolean
  /** What stops a revert. */
  problems: string[]
  /** What works but is not ideal (a snapshot without memory state). */
  warnings: string[]
}

export class SnapshotService {
  readonly keepRevisions: number
  readonly #hypervisor: Hypervisor
  readonly #log: Pick<Log, 'info' | 'warn'>
  readonly #clock: Clock
  readonly #locks = new Map<string, Promise<unknown>>()

  constructor (options: SnapshotServiceOptions) {
    if (!Number.isInteger(options.keepRevisions) || options.keepRevisions < 0) {
      throw new TypeError(`keepRevisions must be an integer >= 0, got ${String(options.keepRevisions)}`)
    }
    this.#hypervisor = options.hypervisor
    this.#log = options.log ?? silentLog
    this.keepRevisions = options.keepRevisions
    this.#clock = options.clock ?? systemClock
  }

  /** Every snapshot of the domain, grouped by base name (alphabetical), newest first within a base. */
  async list (domain: string): Promise<SnapshotEntry[]> {
    const entries = toEntries(await this.#hypervisor.listSnapshots(domain))
    return entries.sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : newerFirst(a, b)))
  }

  /** The versions of `name`, newest (active) first. */
  async versions (domain: string, name: string): Promise<SnapshotEntry[]> {
    const base = assertBaseName(name)
    return (await this.list(domain)).filter((s) => s.base === base)
  }

  /**
   * The snapshot a revert to `name` must use: the newest version of it. Every revert goes
   * through this; after a re-create the literal `name` is usually not a snapshot at all.
   */
  async resolveRevertTarget (domain: string, name: string): Promise<string> {
    const [active] = await this.versions(domain, name)
    if (!active) throw notFound(domain, name)
    return active.name
  }

  /**
   * Snapshots the domain as it is now (with memory when it runs) as the new active version of
   * `name`. The previous version is kept as a revision; revisions beyond keepRevisions are deleted.
   */
  async create (domain: string, name: string, options: { description?: string } = {}): Promise<CreateResult> {
    const base = assertBaseName(name)
    return this.#exclusive(domain, async () => {
      const before = (await this.list(domain)).filter((s) => s.base === base)
      const previous = before[0] ?? null
      // Names order the versions: never earlier than the newest, even if the clock went back.
      const time = Math.max(this.#clock.now(), previous ? previous.versionTime + 1 : 0)
      const snapshot = revisionName(base, time)
      const description = options.description ?? `kiosk-vm-watchdog: "${base}" as of ${new Date(time).toISOString()}`
      await this.#hypervisor.createSnapshot(domain, snapshotXml(snapshot, description))

      // From here on the snapshot exists: a failure is reported with it, never as "not created".
      let after: SnapshotEntry[]
      try {
        after = (await this.list(domain)).filter((s) => s.base === base)
      } catch (err) {
        const warning = `created, but the snapshot list cannot be read back (old revisions were not pruned): ${err instanceof Error ? err.message : String(err)}`
        this.#log.warn({ domain, snapshot, err }, 'snapshot created; reading the list back failed')
        return { name: base, snapshot, revision: previous?.name ?? null, pruned: [], hasMemory: false, warning }
      }
      const created = after.find((s) => s.name === snapshot)
      if (created?.isActive !== true) {
        // Only possible if someone else made a newer version in between; the new one is still kept.
        this.#log.warn({ domain, snapshot, active: after[0]?.name }, 'the new snapshot is not the newest version')
      }
      const pruned = await this.#prune(domain, after, created?.isActive === true ? snapshot : after[0]?.name)
      const revision = previous && !pruned.includes(previous.name) ? previous.name : null
      const hasMemory = created?.hasMemory ?? false
      this.#log.info({ domain, snapshot, base, previous: previous?.name ?? null, kept: revision, pruned, hasMemory }, 'snapshot created')
      if (!hasMemory) this.#log.warn({ domain, snapshot, state: created?.state }, 'snapshot has no memory state (the VM was not running): a revert to it boots the VM')
      return { name: base, snapshot, revision, pruned, hasMemory }
    })
  }

  /** Creates `name` only when it has no version at all. */
  async ensure (domain: string, name: string, options: { description?: string } = {}): Promise<{ created: boolean, target: string }> {
    const [active] = await this.versions(domain, name)
    if (active) return { created: false, target: active.name }
    const result = await this.create(domain, name, options)
    return { created: true, target: result.snapshot }
  }

  /**
   * Makes the previous version of `name` the active one again by deleting the newest. Instant:
   * the running VM is not touched; the next revert uses the restored version.
   */
  async rollback (domain: string, name: string): Promise<RollbackResult> {
    const base = assertBaseName(name)
    return this.#exclusive(domain, async () => {
      const versions = (await this.list(domain)).filter((s) => s.base === base)
      const [active, previous] = versions
      if (!active) throw notFound(domain, base)
      if (!previous) {
        throw new AppError('NO_REVISION', `Snapshot "${base}" of VM ${domain} has no earlier revision to roll back to`, { vm: domain, snapshot: base, active: active.name })
      }
      await this.#hypervisor.deleteSnapshot(domain, active.name, { children: false })
      this.#log.info({ domain, base, restored: previous.name, discarded: active.name }, 'snapshot rolled back')
      return { restored: previous.name, discarded: active.name }
    })
  }

  /**
   * Deletes one snapshot by its exact name (a revision name, or a plain name). The active version
   * of a name (what a revert uses) is refused unless `force`: use rollback() to step back.
   */
  async delete (domain: string, snapshot: string, options: { children?: boolean, force?: boolean } = {}): Promise<{ deleted: string, active: string | null }> {
    const name = assertSnapshotRef(snapshot)
    return this.#exclusive(domain, async () => {
      const all = await this.list(domain)
      const target = all.find((s) => s.name === name)
      if (!target) {
        const versions = all.filter((s) => s.base === name)
        if (versions.length > 0) {
          throw new AppError('SNAPSHOT_NOT_FOUND', `VM ${domain} has no snapshot named exactly "${name}"; its versions are ${versions.map((s) => s.name).join(', ')} (delete one by its full name)`, { vm: domain, snapshot: name, versions: versions.map((s) => s.name) })
        }
        throw notFound(domain, name)
      }
      const versions = all.filter((s) => s.base === target.base)
      if (target.isActive && !options.force) {
        const next = versions[1]
        throw new AppError('CONFLICT', next
          ? `"${name}" is the active version of "${target.base}" (what a revert uses); use rollback to make ${next.name} active, or force`
          : `"${name}" is the only version of "${target.base}": a revert would have nothing to go back to; pass force to delete it anyway`,
        { vm: domain, snapshot: name, base: target.base })
      }
      await this.#hypervisor.deleteSnapshot(domain, name, { children: options.children ?? false })
      const active = versions.find((s) => s.name !== name)?.name ?? null
      this.#log.info({ domain, snapshot: name, base: target.base, active, forced: options.force === true && target.isActive }, 'snapshot deleted')
      return { deleted: name, active }
    })
  }

  /** What check-config and the status API report: can a revert to `name` work, and how well. */
  async check (domain: string, name: string): Promise<SnapshotCheck> {
    const base = assertBaseName(name)
    const result: SnapshotCheck = { name: base, domainExists: false, domainState: null, exists: false, target: null, hasMemory: false, state: null, creationTime: null, revisions: 0, ok: false, problems: [], warnings: [] }
    try {
      result.domainState = (await this.#hypervisor.domainState(domain)).state
      result.domainExists = true
    } catch (err) {
      if (!(err instanceof LibvirtError && err.isNoDomain)) throw err
      result.problems.push(`libvirt has no domain "${domain}"`)
      return result
    }
    const versions = (await this.list(domain)).filter((s) => s.base === base)
    const active = versions[0]
    if (!active) {
      result.problems.push(`VM ${domain} has no snapshot "${base}": create it from the running VM (snapshot create) before reverts can work`)
      return result
    }
    Object.assign(result, { exists: true, target: active.name, hasMemory: active.hasMemory, state: active.state, creationTime: active.creationTime, revisions: versions.length - 1, ok: true })
    if (!active.hasMemory) result.warnings.push(`snapshot ${active.name} has no memory state (taken while the VM was ${active.state}): a revert boots the VM instead of resuming it`)
    return result
  }

  /** Deletes versions older than the active one plus keepRevisions. Failures are logged, not thrown. */
  async #prune (domain: string, versions: SnapshotEntry[], active: string | undefined): Promise<string[]> {
    const pruned: string[] = []
    for (const old of versions.filter((s) => s.name !== active).slice(this.keepRevisions)) {
      try {
        await this.#hypervisor.deleteSnapshot(domain, old.name, { children: false })
        pruned.push(old.name)
      } catch (err) {
        this.#log.warn({ domain, snapshot: old.name, err }, 'cannot delete an old revision; it stays')
      }
    }
    return pruned
  }

  /** Snapshot changes of one domain run one at a time (two creates must not pick names at once). */
  async #exclusive<T> (domain: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(domain) ?? Promise.resolve()
    const run = previous.then(fn, fn)
    const tail = run.catch(() => {})
    this.#locks.set(domain, tail)
    try {
      return await run
    } finally {
      if (this.#locks.get(domain) === tail) this.#locks.delete(domain)
    }
  }
}

function toEntries (infos: SnapshotInfo[]): SnapshotEntry[] {
  const entries = infos.map((info): SnapshotEntry => {
    const revision = parseRevisionName(info.name)
    return {
      ...info,
      base: revision?.base ?? info.name,
      revisionOf: revision?.base ?? null,
      isActive: false,
      versionTime: revision?.time ?? info.creationTime * 1000
    }
  })
  const newest = new Map<string, SnapshotEntry>()
  for (const entry of entries) {
    const best = newest.get(entry.base)
    if (!best || newerFirst(entry, best) < 0) newest.set(entry.base, entry)
  }
  for (const entry of newest.values()) entry.isActive = true
  return entries
}

/** Newest version first; equal times (a plain name and a revision in one second) by name, so the order is total. */
function newerFirst (a: SnapshotEntry, b: SnapshotEntry): number {
  return b.versionTime - a.versionTime || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0)
}

function notFound (domain: string, name: string): AppError {
  return new AppError('SNAPSHOT_NOT_FOUND', `VM ${domain} has no snapshot "${name}"`, { vm: domain, snapshot: name })
}
