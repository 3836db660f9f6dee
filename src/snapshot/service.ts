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
  /** The new snapshot: the active one, unless `warning` says a newer version is. */
  snapshot: string
  /** The snapshot that was active before and is kept as a revision; null when there was none or it was pruned. */
  revision: string | null
  /** Older revisions deleted to keep keep_revisions. */
  pruned: string[]
  /** False when the domain was not running: a revert to it boots the VM from disk. */
  hasMemory: boolean
  /** The snapshot was made, but what comes after it (reading the list back, pruning) failed: why. */
  warning?: string
  /** 'revision': a new `name~stamp`; 'replace': the literal name, a same-named one replaced. */
  mode: CreateMode
  /** 'replace': the same-named snapshot that was deleted after the new state was safe; else null. */
  replaced: string | null
}

/**
 * How create() names the new snapshot. 'revision': `name~stamp`, the previous version kept (the
 * configured snapshot with keep_revisions > 0). 'replace': exactly `name`, a same-named snapshot
 * replaced as exhibition-vm-controller did (a name given explicitly; keep_revisions 0).
 */
export type CreateMode = 'revision' | 'replace'

export interface CreateOptions {
  description?: string
  /** Default: 'revision' when keepRevisions > 0, else 'replace'. */
  mode?: CreateMode
  /**
   * Refuse (SNAPSHOT_VM_NOT_RUNNING) when the domain is shut off or crashed: such a snapshot
   * holds no memory state and a revert to it boots the VM from disk.
   */
  requireRunning?: boolean
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
  /**
   * A snapshot literally named `name` exists but is not the target (a newer revision is): a
   * manual `virsh snapshot-revert DOM name` would go back to that older state.
   */
  staleLiteral: boolean
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
   * `name`. 'revision' mode: a new `name~stamp`; the previous version is kept and only revisions
   * beyond keepRevisions are deleted (never a plainly named snapshot: the service did not make it).
   * 'replace' mode: exactly `name` (see #replace for the order that never leaves no snapshot).
   */
  async create (domain: string, name: string, options: CreateOptions = {}): Promise<CreateResult> {
    const base = assertBaseName(name)
    const mode = options.mode ?? (this.keepRevisions > 0 ? 'revision' : 'replace')
    return this.#exclusive(domain, async () => {
      if (options.requireRunning === true) await this.#assertRunning(domain, base)
      const before = (await this.list(domain)).filter((s) => s.base === base)
      const previous = before[0] ?? null
      const description = options.description ?? `kiosk-vm-watchdog: "${base}" as of ${new Date(this.#clock.now()).toISOString()}`
      let snapshot: string
      let replaced: string | null = null
      const warnings: string[] = []
      if (mode === 'revision') {
        snapshot = this.#nextRevision(base, previous)
        await this.#hypervisor.createSnapshot(domain, snapshotXml(snapshot, description))
      } else {
        snapshot = base
        const outcome = await this.#replace(domain, base, before, description)
        replaced = outcome.replaced
        if (outcome.warning !== null) warnings.push(outcome.warning)
      }

      // From here on the snapshot exists: a failure is reported with it, never as "not created".
      let after: SnapshotEntry[]
      try {
        after = (await this.list(domain)).filter((s) => s.base === base)
      } catch (err) {
        const warning = [...warnings, `created, but the snapshot list cannot be read back (old revisions were not pruned): ${err instanceof Error ? err.message : String(err)}`].join('; ')
        this.#log.warn({ domain, snapshot, err }, 'snapshot created; reading the list back failed')
        return { name: base, snapshot, revision: mode === 'revision' ? previous?.name ?? null : null, pruned: [], hasMemory: false, warning, mode, replaced }
      }
      const created = after.find((s) => s.name === snapshot)
      const pruned = await this.#prune(domain, after, snapshot)
      // The newest version left is what reverts use. Not the new one: a revision `name~stamp`
      // newer than a new literal `name` ('replace': libvirt's creationTime has whole seconds, or
      // the clock stepped back), or a version someone else made meanwhile. It is not deleted (it
      // holds a state keep_revisions keeps, maybe not this service's): the answer says so.
      const active = after.find((s) => !pruned.includes(s.name))
      if (active !== undefined && active.name !== snapshot) {
        warnings.push(`"${snapshot}" was created, but ${active.name} is newer and is what reverts to "${base}" use; delete it (DELETE /api/v1/snapshot/${active.name}?force=true) to make "${snapshot}" the one reverts use`)
        this.#log.warn({ domain, snapshot, active: active.name }, 'the new snapshot is not the newest version: reverts do not use it')
      }
      const revision = mode === 'revision' && previous && !pruned.includes(previous.name) ? previous.name : null
      const hasMemory = created?.hasMemory ?? false
      this.#log.info({ domain, snapshot, base, mode, previous: previous?.name ?? null, kept: revision, replaced, pruned, hasMemory }, 'snapshot created')
      if (!hasMemory) this.#log.warn({ domain, snapshot, state: created?.state }, 'snapshot has no memory state (the VM was not running): a revert to it boots the VM')
      return { name: base, snapshot, revision, pruned, hasMemory, mode, replaced, ...(warnings.length > 0 ? { warning: warnings.join('; ') } : {}) }
    })
  }

  /** `name~stamp`, never earlier than the newest version (even if the clock went back). */
  #nextRevision (base: string, newest: SnapshotEntry | null): string {
    return revisionName(base, Math.max(this.#clock.now(), newest ? newest.versionTime + 1 : 0))
  }

  async #assertRunning (domain: string, base: string): Promise<void> {
    const { state } = await this.#hypervisor.domainState(domain)
    if (state === 'shutoff' || state === 'crashed') {
      throw new AppError('SNAPSHOT_VM_NOT_RUNNING', `VM ${domain} is ${state === 'shutoff' ? 'shut off' : state}: a snapshot "${base}" taken now would hold no memory state, and every revert to it would boot the VM from disk instead of resuming the exhibit. Start the VM and let the artwork settle first, or pass allow_stopped=true to take it anyway`, { vm: domain, snapshot: base, vm_state: state })
    }
  }

  /**
   * Creates the literal `base`, replacing a same-named snapshot. libvirt cannot rename a snapshot
   * and two cannot share a name, so the old one must go before the new one can take its name.
   * Order, so that the VM always has a version of `base` to revert to: (1) the new state as a
   * temporary revision `base~stamp`; (2) delete the old `base`; (3) create `base`; (4) delete the
   * temporary revision. (1) or (2) failing changes nothing (the temporary revision is removed);
   * (3) failing leaves the temporary revision as the active version (SNAPSHOT_KEPT_AS_REVISION);
   * (4) failing is a warning.
   */
  async #replace (domain: string, base: string, versions: SnapshotEntry[], description: string): Promise<{ replaced: string | null, warning: string | null }> {
    const old = versions.find((s) => s.name === base)
    if (!old) {
      await this.#hypervisor.createSnapshot(domain, snapshotXml(base, description))
      return { replaced: null, warning: null }
    }
    const temp = this.#nextRevision(base, versions[0] ?? null)
    await this.#hypervisor.createSnapshot(domain, snapshotXml(temp, `${description} (temporary, while "${base}" is replaced)`))
    try {
      await this.#hypervisor.deleteSnapshot(domain, base, { children: false })
    } catch (err) {
      await this.#hypervisor.deleteSnapshot(domain, temp, { children: false }).catch((cleanup: unknown) => {
        this.#log.warn({ domain, snapshot: temp, err: cleanup }, 'cannot delete the temporary snapshot; it stays')
      })
      throw err
    }
    try {
      await this.#hypervisor.createSnapshot(domain, snapshotXml(base, description))
    } catch (err) {
      this.#log.warn({ domain, snapshot: base, kept: temp, err }, `the old "${base}" is deleted but the new one cannot be created; the new state is kept as ${temp}, which reverts use`)
      throw new AppError('SNAPSHOT_KEPT_AS_REVISION', `libvirt refused to create "${base}" after the old one was deleted; the new state is kept as ${temp}`, { vm: domain, snapshot: base, kept_as: temp }, { cause: err })
    }
    try {
      await this.#hypervisor.deleteSnapshot(domain, temp, { children: false })
    } catch (err) {
      this.#log.warn({ domain, snapshot: temp, err }, 'cannot delete the temporary snapshot; it stays')
      return { replaced: base, warning: `the temporary snapshot ${temp} could not be deleted (${err instanceof Error ? err.message : String(err)})` }
    }
    return { replaced: base, warning: null }
  }

  /** Creates `name` only when it has no version at all. */
  async ensure (domain: string, name: string, options: CreateOptions = {}): Promise<{ created: boolean, target: string }> {
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
   * of `protect` (the configured snapshot_name: what reverts use) is refused unless `force`: use
   * rollback() to step back. Any other snapshot is deleted when a technician names it.
   */
  async delete (domain: string, snapshot: string, options: { children?: boolean, force?: boolean, protect?: string } = {}): Promise<{ deleted: string, active: string | null }> {
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
      if (target.isActive && target.base === options.protect && !options.force) {
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
    const result: SnapshotCheck = { name: base, domainExists: false, domainState: null, exists: false, target: null, hasMemory: false, state: null, creationTime: null, revisions: 0, ok: false, problems: [], warnings: [], staleLiteral: false }
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
    if (active.name !== base && versions.some((s) => s.name === base)) {
      result.staleLiteral = true
      result.warnings.push(`a snapshot named exactly "${base}" exists but is older than ${active.name}, the one reverts use: "virsh snapshot-revert ${domain} ${base}" would go back to that older state (revert through the service: POST /api/v1/revert; delete the old one: DELETE /api/v1/snapshot/${base})`)
    }
    return result
  }

  /**
   * Deletes revisions (`name~stamp`, the ones this service made) beyond keepRevisions, never the
   * new snapshot and never a plainly named one (EVC's or a technician's `ready`). Failures are logged.
   */
  async #prune (domain: string, versions: SnapshotEntry[], keep: string): Promise<string[]> {
    const pruned: string[] = []
    for (const old of versions.filter((s) => s.name !== keep && s.revisionOf !== null).slice(this.keepRevisions)) {
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
