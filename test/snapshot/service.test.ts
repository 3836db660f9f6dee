// SnapshotService through the real koffi binding on libvirt's in-process test driver. Every test
// opens its own connection: test:///default starts each one with domain `test` running and no snapshots.
import t, { type Test } from 'tap'
import { AppError } from '../../src/errors.ts'
import { openHypervisor, snapshotXml, LibvirtError, type Hypervisor } from '../../src/libvirt/index.ts'
import { SnapshotService, parseRevisionName, revisionName } from '../../src/snapshot/index.ts'

const T0 = Date.parse('2026-03-01T10:00:00.000Z')

async function setup (t: Test, keepRevisions = 3) {
  const hypervisor = openHypervisor('test:///default', { reconnect: false })
  await hypervisor.connect()
  t.teardown(() => hypervisor.close())
  let now = T0
  const logs: Array<{ level: string, msg: string, obj: object }> = []
  const log = {
    info: (obj: object, msg: string) => { logs.push({ level: 'info', obj, msg }) },
    warn: (obj: object, msg: string) => { logs.push({ level: 'warn', obj, msg }) }
  }
  const service = new SnapshotService({ hypervisor, log, keepRevisions, clock: { now: () => now } })
  return { hypervisor, service, logs, clock: { set (ms: number) { now = ms }, advance (ms: number) { now += ms } } }
}

async function rejectsWithCode (t: Test, promise: Promise<unknown>, code: string, message?: RegExp) {
  const err = await promise.then(() => null, (e: unknown) => e)
  t.type(err, AppError, `fails with an AppError ${code}`)
  t.equal((err as AppError).code, code)
  if (message) t.match((err as AppError).message, message)
  return err as AppError
}

const names = async (h: Hypervisor) => (await h.listSnapshots('test')).map((s) => s.name).sort()

t.test('create on a VM without snapshots: a revision with memory that is the revert target', async (t) => {
  const { service, hypervisor } = await setup(t)
  const result = await service.create('test', 'ready')
  t.same(result, { name: 'ready', snapshot: 'ready~20260301T100000.000Z', revision: null, pruned: [], hasMemory: true, mode: 'revision', replaced: null })
  t.same(await names(hypervisor), ['ready~20260301T100000.000Z'])
  t.equal(await service.resolveRevertTarget('test', 'ready'), 'ready~20260301T100000.000Z')
  const [entry] = await service.list('test')
  t.match(entry, { name: 'ready~20260301T100000.000Z', base: 'ready', revisionOf: 'ready', isActive: true, isCurrent: true, hasMemory: true, state: 'running', versionTime: T0 })
  t.match(entry?.description, /"ready" as of 2026-03-01T10:00:00.000Z/)
  t.ok(Math.abs((entry?.creationTime ?? 0) - Date.now() / 1000) < 60, 'libvirt recorded the real creation time')
  t.match(await service.check('test', 'ready'), { ok: true, exists: true, target: 'ready~20260301T100000.000Z', hasMemory: true, revisions: 0, domainState: 'running', problems: [], warnings: [] })

  // The target really is a snapshot libvirt can revert to.
  await hypervisor.destroy('test')
  await hypervisor.revertToSnapshot('test', await service.resolveRevertTarget('test', 'ready'))
  t.match(await hypervisor.domainState('test'), { state: 'running', reasonName: 'from_snapshot' })
})

t.test('creating an existing name keeps the previous version as a revision', async (t) => {
  const { service, hypervisor, clock } = await setup(t)
  const first = await service.create('test', 'ready', { description: 'first' })
  clock.advance(60_000)
  const second = await service.create('test', 'ready', { description: 'second' })
  t.equal(second.revision, first.snapshot, 'the previous one is kept, named as before')
  t.same(second.pruned, [])
  t.same(await names(hypervisor), [first.snapshot, second.snapshot])
  t.equal(await service.resolveRevertTarget('test', 'ready'), second.snapshot)
  const versions = await service.versions('test', 'ready')
  t.same(versions.map((s) => [s.name, s.isActive, s.description]), [[second.snapshot, true, 'second'], [first.snapshot, false, 'first']])
  t.match(await service.check('test', 'ready'), { target: second.snapshot, revisions: 1 })
})

t.test('keep_revisions: the newest K older versions stay, older ones are deleted, other names untouched', async (t) => {
  const { service, hypervisor, clock } = await setup(t, 2)
  await hypervisor.createSnapshot('test', snapshotXml('other', 'not ours'))
  const made: string[] = []
  for (let i = 0; i < 5; i++) {
    const r = await service.create('test', 'ready', { description: `v${i}` })
    made.push(r.snapshot)
    if (i === 3) t.same(r.pruned, [made[0]], 'the fourth create prunes the first')
    if (i === 4) t.same(r.pruned, [made[1]])
    clock.advance(1000)
  }
  t.same(await names(hypervisor), ['other', made[2], made[3], made[4]])
  t.equal(await service.resolveRevertTarget('test', 'ready'), made[4])
  t.equal(await service.resolveRevertTarget('test', 'other'), 'other', 'a plain snapshot is its own only version')
})

// (A second connection to test:///default opened while the first is open shares its state: one per subtest.)
t.test('keep_revisions 0: the literal name, replaced in place only once the new state exists', async (t) => {
  const none = await setup(t, 0)
  const a = await none.service.create('test', 'ready', { description: 'a' })
  t.same(a, { name: 'ready', snapshot: 'ready', revision: null, pruned: [], hasMemory: true, mode: 'replace', replaced: null })
  none.clock.advance(1)
  const b = await none.service.create('test', 'ready', { description: 'b' })
  t.same(b, { name: 'ready', snapshot: 'ready', revision: null, pruned: [], hasMemory: true, mode: 'replace', replaced: 'ready' })
  t.same(await names(none.hypervisor), ['ready'])
  t.equal((await none.hypervisor.listSnapshots('test'))[0]?.description, 'b')
})

t.test('rollback makes the previous version active without touching the VM; the revert then lands there', async (t) => {
  const { service, hypervisor, clock } = await setup(t)
  const good = await service.create('test', 'ready', { description: 'good' }) // running: memory state
  await hypervisor.destroy('test')
  clock.advance(5000)
  const bad = await service.create('test', 'ready', { description: 'bad' }) // shut off: no memory
  t.equal(bad.hasMemory, false)
  t.equal(await service.resolveRevertTarget('test', 'ready'), bad.snapshot)
  t.match(await service.check('test', 'ready'), { ok: true, hasMemory: false, state: 'shutoff', warnings: [/no memory state/] })

  await hypervisor.start('test')
  const stateBefore = await hypervisor.domainState('test')
  t.same(await service.rollback('test', 'ready'), { restored: good.snapshot, discarded: bad.snapshot })
  t.same(await hypervisor.domainState('test'), stateBefore, 'the running VM was not touched')
  t.same(await names(hypervisor), [good.snapshot])

  const target = await service.resolveRevertTarget('test', 'ready')
  t.equal(target, good.snapshot)
  t.match(await hypervisor.snapshotXml('test', target), /<description>good<\/description>[\s\S]*<state>running<\/state>/)
  await hypervisor.destroy('test')
  await hypervisor.revertToSnapshot('test', target)
  t.match(await hypervisor.domainState('test'), { state: 'running', reasonName: 'from_snapshot' }, 'the revert restored the good, running state')

  await rejectsWithCode(t, service.rollback('test', 'ready'), 'NO_REVISION', /no earlier revision/)
  t.same(await names(hypervisor), [good.snapshot], 'a refused rollback deletes nothing')
  const missing = await rejectsWithCode(t, service.rollback('test', 'never-made'), 'SNAPSHOT_NOT_FOUND')
  t.equal(missing.statusCode, 404)
})

t.test('a plainly named snapshot (made by exhibition-vm-controller or virsh) is the oldest version', async (t) => {
  const { service, hypervisor, clock } = await setup(t)
  await hypervisor.createSnapshot('test', snapshotXml('ready', 'from EVC'))
  t.equal(await service.resolveRevertTarget('test', 'ready'), 'ready')
  t.match(await service.list('test'), [{ name: 'ready', base: 'ready', revisionOf: null, isActive: true }])
  clock.set(Date.now() + 1000)
  const next = await service.create('test', 'ready')
  t.equal(next.revision, 'ready')
  t.equal(await service.resolveRevertTarget('test', 'ready'), next.snapshot)
  t.same(await service.rollback('test', 'ready'), { restored: 'ready', discarded: next.snapshot })
  t.equal(await service.resolveRevertTarget('test', 'ready'), 'ready')
})

t.test('revision names only ever increase, even when the clock goes back', async (t) => {
  const { service, clock } = await setup(t)
  const first = await service.create('test', 'ready')
  clock.set(T0 - 3_600_000) // an hour back (NTP correction)
  const second = await service.create('test', 'ready')
  t.equal(second.snapshot, revisionName('ready', T0 + 1))
  t.equal(await service.resolveRevertTarget('test', 'ready'), second.snapshot)
  t.equal(second.revision, first.snapshot)

  // Concurrent creates on one VM are serialized: distinct names, in call order.
  const results = await Promise.all([service.create('test', 'ready'), service.create('test', 'ready'), service.create('test', 'ready')])
  const times = results.map((r) => parseRevisionName(r.snapshot)?.time ?? 0)
  t.same(times, [T0 + 2, T0 + 3, T0 + 4])
  t.equal(await service.resolveRevertTarget('test', 'ready'), results[2]?.snapshot)
})

t.test('delete: revisions by full name; the active version only with force', async (t) => {
  const { service, hypervisor, clock } = await setup(t)
  const v1 = await service.create('test', 'ready')
  clock.advance(1000)
  const v2 = await service.create('test', 'ready')
  clock.advance(1000)
  const v3 = await service.create('test', 'ready')

  t.same(await service.delete('test', v1.snapshot), { deleted: v1.snapshot, active: v3.snapshot })
  t.same(await names(hypervisor), [v2.snapshot, v3.snapshot])

  // The protected name (the configured snapshot_name: what reverts use) needs force for its active version.
  await rejectsWithCode(t, service.delete('test', v3.snapshot, { protect: 'ready' }), 'CONFLICT', /active version[\s\S]*rollback/)
  await rejectsWithCode(t, service.delete('test', 'ready', { protect: 'ready' }), 'SNAPSHOT_NOT_FOUND', /no snapshot named exactly "ready"; its versions are/)
  t.same(await names(hypervisor), [v2.snapshot, v3.snapshot], 'refusals delete nothing')

  t.same(await service.delete('test', v3.snapshot, { force: true, protect: 'ready' }), { deleted: v3.snapshot, active: v2.snapshot })
  t.equal(await service.resolveRevertTarget('test', 'ready'), v2.snapshot)
  await rejectsWithCode(t, service.delete('test', v2.snapshot, { protect: 'ready' }), 'CONFLICT', /only version/)
  // Any other name: a technician deletes it by name, active or not.
  t.same(await service.delete('test', v2.snapshot, { protect: 'other' }), { deleted: v2.snapshot, active: null })
  t.same(await names(hypervisor), [])
  await service.create('test', 'ready')
  await service.delete('test', (await names(hypervisor))[0]!, { force: true, protect: 'ready' })
  t.same(await names(hypervisor), [])
  await rejectsWithCode(t, service.delete('test', v2.snapshot), 'SNAPSHOT_NOT_FOUND')
  await rejectsWithCode(t, service.resolveRevertTarget('test', 'ready'), 'SNAPSHOT_NOT_FOUND', /VM test has no snapshot "ready"/)
})

t.test('bad names are refused before libvirt is asked', async (t) => {
  const { service, hypervisor } = await setup(t)
  for (const bad of ['', 'has space', '../etc', '-leading-dash', 'x'.repeat(101), 'ready~20260301T100000.000Z', 'ready~notastamp']) {
    await rejectsWithCode(t, service.create('test', bad), 'BAD_SNAPSHOT_NAME')
    await rejectsWithCode(t, service.rollback('test', bad), 'BAD_SNAPSHOT_NAME')
    await rejectsWithCode(t, service.resolveRevertTarget('test', bad), 'BAD_SNAPSHOT_NAME')
  }
  const hint = await rejectsWithCode(t, service.create('test', 'ready~20260301T100000.000Z'), 'BAD_SNAPSHOT_NAME', /revision name; use its base name/)
  t.equal(hint.statusCode, 400)
  for (const bad of ['', 'a/b', 'ready~20261301T100000.000Z', 'ready~x']) await rejectsWithCode(t, service.delete('test', bad), 'BAD_SNAPSHOT_NAME')
  await rejectsWithCode(t, service.check('test', 'bad name'), 'BAD_SNAPSHOT_NAME')
  t.same(await names(hypervisor), [])
  t.throws(() => new SnapshotService({ hypervisor, keepRevisions: -1 }), TypeError)
})

t.test('check: a missing snapshot and a missing domain are reported, not thrown', async (t) => {
  const { service } = await setup(t)
  t.match(await service.check('test', 'ready'), { ok: false, domainExists: true, domainState: 'running', exists: false, target: null, problems: [/no snapshot "ready"/] })
  t.match(await service.check('ghost', 'ready'), { ok: false, domainExists: false, domainState: null, problems: [/no domain "ghost"/] })
  const err = await service.create('ghost', 'ready').then(() => null, (e: unknown) => e)
  t.ok(err instanceof LibvirtError && err.isNoDomain, 'an unknown domain is libvirt\'s error, mapped by the API error handler')
})

t.test('ensure creates a name only when it has no version', async (t) => {
  const { service, hypervisor, clock } = await setup(t)
  const first = await service.ensure('test', 'ready', { description: 'at start' })
  t.same(first, { created: true, target: 'ready~20260301T100000.000Z' })
  clock.advance(1000)
  t.same(await service.ensure('test', 'ready'), { created: false, target: first.target })
  t.same(await names(hypervisor), [first.target])
})

t.test('revision names', async (t) => {
  t.equal(revisionName('ready', T0 + 123), 'ready~20260301T100000.123Z')
  t.same(parseRevisionName('ready~20260301T100000.123Z'), { base: 'ready', time: T0 + 123 })
  t.same(parseRevisionName('a.b+c_d-1~19991231T235959.999Z'), { base: 'a.b+c_d-1', time: Date.parse('1999-12-31T23:59:59.999Z') })
  t.equal(parseRevisionName('ready'), null)
  t.equal(parseRevisionName('ready~20260230T100000.000Z'), null, 'no 30 February')
  t.equal(parseRevisionName('bad name~20260301T100000.000Z'), null, 'the base must be a valid name')
  t.equal(parseRevisionName('~20260301T100000.000Z'), null)
})
