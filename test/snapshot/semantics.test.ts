// Snapshot semantics a technician can predict (issue 12), on libvirt's test driver: an explicit
// name is created with exactly that name (a same-named one replaced, never leaving no snapshot),
// the service prunes only the revisions it made, keep_revisions 0 is EVC's replace-in-place,
// a literal `ready` older than the revision reverts use is reported, EVC's list shape, and a
// disk-only `ready` (taken while the VM is shut off): refused unless asked for, and a revert to it
// ends with the VM running.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { openHypervisor, snapshotXml, type Hypervisor } from '../../src/libvirt/index.ts'
import { SnapshotService } from '../../src/snapshot/index.ts'
import { AppError } from '../../src/errors.ts'
import { snapshotCheck } from '../../src/doctor/checks/libvirt.ts'
import { assertError, build, call, events, until } from '../api/helpers.ts'
import { scratch } from '../doctor/helpers.ts'

const REVISION = /^ready~\d{8}T\d{6}\.\d{3}Z$/

/** A connection of the test's own, opened before the app's: test:///default connections opened meanwhile share its state. */
async function ownConnection (t: Test): Promise<Hypervisor> {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  return h
}

async function snapshotNames (h: Hypervisor): Promise<string[]> {
  return (await h.listSnapshots('test')).map((s) => s.name).sort()
}

t.test('an explicit name is created with exactly that name, replaces a same-named one, and DELETE by that name works (docs/api.md)', async (t) => {
  const { app } = await build(t)
  const first = await call(app, { method: 'POST', url: '/api/v1/snapshot/create?snapshot_name=before_update' })
  t.equal(first.status, 201)
  t.match(first.body.details, { snapshot: 'before_update', created: 'before_update', replaced: false, has_memory: true })
  const firstTime = (await app.hypervisor.listSnapshots('test')).find((s) => s.name === 'before_update')!.description

  const again = await call(app, '/api/v1/snapshot/create?snapshot_name=before_update')
  t.equal(again.status, 201)
  t.match(again.body.details, { snapshot: 'before_update', created: 'before_update', replaced: true, previous_kept_as: null })
  const names = await snapshotNames(app.hypervisor)
  t.equal(names.filter((n) => n.startsWith('before_update')).length, 1, 'one snapshot of that name, no temporary one left')
  t.ok(names.includes('before_update'))
  t.equal((await events(app, 'snapshot_create'))[0]?.replaced, 'before_update')
  t.ok(firstTime !== undefined)

  const list = await call(app, '/api/v1/snapshots')
  t.ok(list.body.snapshots.every((s: unknown) => typeof s === 'string'), 'snapshots: a list of names (EVC)')
  t.ok(list.body.snapshots.includes('before_update'))
  t.match(list.body.snapshot_details.find((s: { name: string }) => s.name === 'before_update'), { revision_of: null, is_target: false, has_memory: true })

  const del = await call(app, { method: 'DELETE', url: '/api/v1/snapshot/before_update' })
  t.equal(del.status, 200, `DELETE works (${del.res.body})`)
  t.notOk((await snapshotNames(app.hypervisor)).includes('before_update'))
  t.equal((await call(app, '/api/v1/status')).body.snapshot_exists, true, 'the configured snapshot is untouched')
})

t.test('a literal ready (EVC\'s) survives four creates of the configured snapshot; check, doctor and /status name it', async (t) => {
  const own = await ownConnection(t)
  await own.createSnapshot('test', snapshotXml('ready', 'taken by exhibition-vm-controller'))
  const { app, run } = await build(t, { config: { keep_revisions: 1 } })
  t.same(await snapshotNames(app.hypervisor), ['ready'], 'the app shares the test driver state and found ready')
  t.same((await call(app, '/api/v1/status')).body.snapshot_warnings, [], 'ready is the target: nothing to say')

  const made: string[] = []
  for (let i = 0; i < 4; i++) {
    await run(1000)
    const r = await call(app, { method: 'POST', url: '/api/v1/snapshot/create' })
    t.equal(r.status, 201)
    made.push(r.body.details.created)
  }
  made.forEach((name) => t.match(name, REVISION))
  t.same(await snapshotNames(app.hypervisor), ['ready', made[2], made[3]], 'pruning kept the literal ready, the target and one revision')
  const status = (await call(app, '/api/v1/status')).body
  t.equal(status.snapshot_target, made[3])
  t.equal(status.snapshot_warnings.length, 1)
  t.match(status.snapshot_warnings[0], /a snapshot named exactly "ready" exists but is older than ready~.*virsh snapshot-revert test ready" would go back to that older state/)

  // docs/troubleshooting.md's manual revert picks the same snapshot from virsh's list of names.
  const doc = readFileSync(new URL('../../docs/troubleshooting.md', import.meta.url), 'utf8')
  const pipeline = /snapshot-list exhibit --name \| (grep [^\n]*tail -n 1)\)/.exec(doc)?.[1]
  t.ok(pipeline, 'the documented pipeline is found')
  const listed: string[] = (await call(app, '/api/v1/snapshots')).body.snapshots
  const picked = execFileSync('sh', ['-c', `printf '%s\\n' "$@" | ${pipeline!}`, 'sh', ...listed], { encoding: 'utf8' }).trim()
  t.equal(picked, made[3], 'the documented command reverts to the current revision, not the literal ready')

  // A technician may still delete it by name (it is not what reverts use).
  t.equal((await call(app, { method: 'DELETE', url: '/api/v1/snapshot/ready' })).status, 200)
  t.same((await call(app, '/api/v1/status')).body.snapshot_warnings, [])
})

t.test('check-config and doctor (snapshot:VM) warn about a literal ready older than the target', async (t) => {
  const s = scratch(t, { config: { vm_name: 'test' } })
  await s.hypervisor.connect()
  await s.hypervisor.createSnapshot('test', snapshotXml('ready'))
  t.match(await s.run(snapshotCheck('test')), { level: 'ok' })
  const service = new SnapshotService({ hypervisor: s.hypervisor, keepRevisions: 3, clock: { now: () => Date.now() + 60_000 } })
  const { snapshot } = await service.create('test', 'ready')
  const r = await s.run(snapshotCheck('test'))
  t.equal(r.level, 'warn')
  t.match(r.message, `an older snapshot named exactly "ready" exists too: "virsh snapshot-revert test ready" would go back to that older state, not to ${snapshot}`)
  t.match(r.fix, `virsh snapshot-revert test ${snapshot} --running`)
})

t.test('keep_revisions 0: the configured snapshot keeps its literal name and is replaced in place', async (t) => {
  const { app } = await build(t, { config: { keep_revisions: 0 } })
  t.same(await snapshotNames(app.hypervisor), ['ready'], 'created at start under its literal name')
  const before = (await app.hypervisor.listSnapshots('test'))[0]!.description
  const r = await call(app, { method: 'POST', url: '/api/v1/snapshot/create' })
  t.equal(r.status, 201)
  t.match(r.body.details, { snapshot: 'ready', created: 'ready', replaced: true, previous_kept_as: null, has_memory: true })
  t.same(await snapshotNames(app.hypervisor), ['ready'])
  t.not((await app.hypervisor.listSnapshots('test'))[0]!.description, before, 'a new snapshot took the name')
  t.equal((await call(app, '/api/v1/status')).body.snapshot_target, 'ready')
})

/** The real test-driver hypervisor, with createSnapshot/deleteSnapshot failing when `fail` says so. */
function failing (h: Hypervisor, fail: { create?: (name: string) => boolean, delete?: (name: string) => boolean }): Hypervisor {
  return new Proxy(h, {
    get (target, prop, receiver) {
      if (prop === 'createSnapshot') {
        return async (domain: string, xml: string) => {
          const name = /<name>([^<]*)<\/name>/.exec(xml)?.[1] ?? ''
          if (fail.create?.(name) === true) throw new Error(`injected: cannot create ${name}`)
          return target.createSnapshot(domain, xml)
        }
      }
      if (prop === 'deleteSnapshot') {
        return async (domain: string, name: string, options?: { children?: boolean }) => {
          if (fail.delete?.(name) === true) throw new Error(`injected: cannot delete ${name}`)
          return target.deleteSnapshot(domain, name, options)
        }
      }
      const value = Reflect.get(target, prop, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}

t.test('replace in place never leaves the VM without a version of the snapshot when a step fails', async (t) => {
  const h = await ownConnection(t)
  const mode = { failFinal: false, failTemp: false, failDeleteOld: false }
  const proxy = failing(h, {
    create: (name) => (name === 'ready' && mode.failFinal) || (name !== 'ready' && mode.failTemp),
    delete: (name) => name === 'ready' && mode.failDeleteOld
  })
  let now = Date.parse('2026-03-01T10:00:00.000Z')
  const service = new SnapshotService({ hypervisor: proxy, keepRevisions: 0, clock: { now: () => now } })
  await service.create('test', 'ready', { description: 'old' })
  const describe = async () => (await h.listSnapshots('test')).map((s) => `${s.name}:${s.description ?? ''}`).sort()

  // (1) The temporary snapshot cannot be made: nothing changed.
  mode.failTemp = true
  await t.rejects(service.create('test', 'ready', { description: 'new' }), /injected: cannot create ready~/)
  t.same(await describe(), ['ready:old'])
  mode.failTemp = false

  // (2) The old one cannot be deleted: the temporary one is removed again, the old one stays.
  mode.failDeleteOld = true
  await t.rejects(service.create('test', 'ready', { description: 'new' }), /injected: cannot delete ready/)
  t.same(await describe(), ['ready:old'])
  mode.failDeleteOld = false

  // (3) The old one is gone and the new one cannot take the name: the new state stays as a
  // revision, and it is what a revert uses.
  mode.failFinal = true
  now += 1000
  const err = await service.create('test', 'ready', { description: 'new' }).then(() => null, (e: unknown) => e)
  t.type(err, AppError)
  t.equal((err as AppError).code, 'SNAPSHOT_KEPT_AS_REVISION')
  const left = await snapshotNames(h)
  t.equal(left.length, 1)
  t.match(left[0], REVISION)
  t.equal(await service.resolveRevertTarget('test', 'ready'), left[0], 'reverts use the kept new state')
  t.equal((err as AppError).details?.kept_as, left[0])

  // The next create that works takes the literal name again and removes the revision (keep_revisions 0).
  mode.failFinal = false
  now += 1000
  const ok = await service.create('test', 'ready', { description: 'newer' })
  t.match(ok, { snapshot: 'ready', mode: 'replace', pruned: [left[0]] })
  t.same(await describe(), ['ready:newer'])
})

t.test('replace: a revision newer than the new literal snapshot is named in the answer and the audit trail, not deleted', async (t) => {
  // A revision stamped later than the real clock (as after the clock stepped back; or one made
  // within the same second, libvirt's creationTime having whole seconds).
  const own = await ownConnection(t)
  const stale = 'before_update~20991231T235959.000Z'
  await own.createSnapshot('test', snapshotXml(stale, 'an earlier before_update'))
  const { app } = await build(t)
  const r = await call(app, { method: 'POST', url: '/api/v1/snapshot/create?snapshot_name=before_update' })
  t.equal(r.status, 201, 'the snapshot was made')
  t.match(r.body.details, { created: 'before_update', warnings: [`"before_update" was created, but ${stale} is newer and is what reverts to "before_update" use; delete it (DELETE /api/v1/snapshot/${stale}?force=true) to make "before_update" the one reverts use`] })
  t.match(r.body.message, /created \(but: .*is newer and is what reverts/)
  t.match((await events(app, 'snapshot_create'))[0], { created: 'before_update', warning: new RegExp(`${stale} is newer`) })
  t.same((await snapshotNames(app.hypervisor)).filter((n) => n.startsWith('before_update')), ['before_update', stale], 'the newer revision is kept')

  // Following the advice makes the new one what reverts use; the next create has no warning.
  t.equal((await call(app, { method: 'DELETE', url: `/api/v1/snapshot/${stale}?force=true` })).status, 200)
  const again = await call(app, { method: 'POST', url: '/api/v1/snapshot/create?snapshot_name=before_update' })
  t.equal(again.status, 201)
  t.equal(again.body.details.warnings, undefined)
})

t.test('replace with keep_revisions 0: a newer revision is pruned, so the new literal snapshot is active and no warning is given', async (t) => {
  const h = await ownConnection(t)
  const stale = 'ready~20991231T235959.000Z'
  await h.createSnapshot('test', snapshotXml(stale, 'future'))
  const warned: string[] = []
  const service = new SnapshotService({ hypervisor: h, keepRevisions: 0, log: { info: () => {}, warn: (_o: object, msg: string) => { warned.push(msg) } } })
  const r = await service.create('test', 'ready')
  t.match(r, { snapshot: 'ready', mode: 'replace', pruned: [stale] })
  t.equal(r.warning, undefined)
  t.same(warned, [], 'nothing logged as not active')
  t.equal(await service.resolveRevertTarget('test', 'ready'), 'ready')
})

t.test('revision pruning deletes only revisions this service made, never a plain name', async (t) => {
  const h = await ownConnection(t)
  await h.createSnapshot('test', snapshotXml('ready', 'plain'))
  let now = Date.now() + 60_000
  const service = new SnapshotService({ hypervisor: h, keepRevisions: 0, clock: { now: () => now } })
  // keep_revisions 0 in revision mode: only the newest revision stays; the plain ready is never pruned.
  for (let i = 0; i < 3; i++) {
    now += 1000
    const r = await service.create('test', 'ready', { mode: 'revision' })
    t.notOk(r.pruned.includes('ready'))
  }
  const left = await snapshotNames(h)
  t.equal(left.length, 2)
  t.equal(left[0], 'ready')
  t.match(await service.check('test', 'ready'), { staleLiteral: true, target: left[1] })
})

t.test('disk-only ready: refused unless allow_stopped; a revert to it starts the VM; status never healthy while the VM is off', async (t) => {
  const { app, run } = await build(t, { config: { heartbeat_check_interval: 0.05, heartbeat_timeout: 3, startup_grace: 0, post_revert_grace: 5 } })
  t.equal((await call(app, { method: 'POST', url: '/api/v1/vm/stop' })).status, 202)
  await until('the VM is shut off', async () => (await app.hypervisor.domainState('test')).state === 'shutoff')
  const before = await snapshotNames(app.hypervisor)

  const refused = await call(app, { method: 'POST', url: '/api/v1/snapshot/create' })
  assertError(t, refused, 409, 'SNAPSHOT_VM_NOT_RUNNING', /VM test is shut off: a snapshot "ready" taken now would hold no memory state.*allow_stopped=true/)
  t.same(await snapshotNames(app.hypervisor), before, 'nothing created')

  const forced = await call(app, { method: 'POST', url: '/api/v1/snapshot/create?allow_stopped=true' })
  t.equal(forced.status, 201)
  t.match(forced.body.details, { has_memory: false, warnings: [/holds no memory state/] })
  const status = (await call(app, '/api/v1/status')).body
  t.equal(status.snapshot_target, forced.body.details.created)
  t.equal(status.snapshot_has_memory, false)

  // Another name of a stopped VM is the technician's business: not refused.
  t.equal((await call(app, '/api/v1/snapshot/create?snapshot_name=cold')).status, 201)

  // Start = revert to the disk-only snapshot: the VM must run afterwards.
  t.equal((await call(app, { method: 'POST', url: '/api/v1/vm/start' })).status, 202)
  await until('the revert finished', async () => (await events(app, 'revert_finished')).length === 1)
  t.equal((await app.hypervisor.domainState('test')).state, 'running', 'the revert started the VM')

  // Heartbeats (as from loopback) for 10 s with a state poll every 50 ms: no further revert, and
  // whenever status says healthy, libvirt says running (and healthy is seen: the VM did come up).
  let healthySamples = 0
  for (let i = 0; i < 10; i++) {
    t.equal((await call(app, '/api/v1/heartbeat')).status, 200)
    await run(1000)
    const s = (await call(app, '/api/v1/status')).body
    t.ok(s.watchdog.state !== 'healthy' || s.vm_state === 'running', `second ${i + 1}: healthy only while running (${s.watchdog.state}, VM ${s.vm_state})`)
    if (s.watchdog.state === 'healthy') healthySamples++
  }
  t.ok(healthySamples > 0, `healthy was seen (${healthySamples} of 10 samples)`)
  t.equal((await events(app, 'revert_started')).length, 1, 'one revert, no vm_not_running loop')
  t.equal((await call(app, '/api/v1/status')).body.watchdog.state, 'healthy')

  // An automatic revert (VM killed behind the service's back) to the disk-only snapshot also ends running.
  await app.hypervisor.destroy('test')
  await run(500)
  await until('the second revert finished', async () => (await events(app, 'revert_finished')).length === 2)
  t.equal((await app.hypervisor.domainState('test')).state, 'running')
  t.match((await events(app, 'revert_started'))[0], { reason: 'vm_not_running' })
})

t.test('create_snapshot_if_missing does not take a disk-only ready of a VM that is shut off at start', async (t) => {
  const own = await ownConnection(t)
  await own.destroy('test')
  const { app } = await build(t)
  t.same(await snapshotNames(app.hypervisor), [], 'no snapshot taken of the shut-off VM')
  const status = (await call(app, '/api/v1/status')).body
  t.equal(status.snapshot_exists, false)
  t.match(status.snapshot_problems, [/has no snapshot "ready"/])
})
