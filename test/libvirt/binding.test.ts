// The koffi binding against libvirt's in-process test driver (test:///default): real libvirt code,
// no daemon. Each connection to test:///default starts from the same fresh state (domain `test`,
// running, no snapshots), so every test opens its own.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openHypervisor, LibvirtError, snapshotXml, type Hypervisor, type LifecycleEvent } from '../../src/libvirt/index.ts'

async function open (t: Test): Promise<Hypervisor> {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  return h
}

async function rejectsWith (t: Test, promise: Promise<unknown>, codeName: string, operation?: string) {
  const err = await promise.then(() => null, (e: unknown) => e)
  t.type(err, LibvirtError, `fails with a LibvirtError (${codeName})`)
  const e = err as LibvirtError
  t.equal(e.codeName, codeName)
  if (operation) t.equal(e.operation, operation)
  t.ok(e.message.length > 0, 'carries libvirt\'s message')
  return e
}

t.test('connects and reports the library version', async (t) => {
  const h = await open(t)
  t.equal(h.connected, true)
  t.match(h.libraryVersion(), /^\d+\.\d+\.\d+$/)
  t.same(await h.listDomains(), ['test'])
  t.equal(await h.domainExists('test'), true)
  t.equal(await h.domainExists('no-such-vm'), false)
})

t.test('domain state, XML and lifecycle calls', async (t) => {
  const h = await open(t)
  t.match(await h.domainState('test'), { state: 'running' })
  t.match(await h.domainXml('test'), /<name>test<\/name>/)

  await h.destroy('test')
  t.same(await h.domainState('test'), { state: 'shutoff', reason: 2, reasonName: 'destroyed' })
  await h.start('test')
  t.match(await h.domainState('test'), { state: 'running', reasonName: 'booted' })
  await h.shutdown('test')
  t.match(await h.domainState('test'), { state: 'shutoff', reasonName: 'shutdown' })
  await h.start('test')
  await h.reboot('test')
  t.match(await h.domainState('test'), { state: 'running' })
})

t.test('unknown domain: a typed error for every domain call', async (t) => {
  const h = await open(t)
  for (const call of [
    () => h.domainState('ghost'), () => h.domainXml('ghost'), () => h.start('ghost'), () => h.destroy('ghost'),
    () => h.listSnapshots('ghost'), () => h.revertToSnapshot('ghost', 'ready'), () => h.agentCommand('ghost', '{}', 1)
  ]) {
    await rejectsWith(t, call(), 'VIR_ERR_NO_DOMAIN', 'virDomainLookupByName')
  }
  // libvirt's own refusal, passed through: the test driver calls starting a running domain an internal error.
  const e = await rejectsWith(t, h.start('test'), 'VIR_ERR_INTERNAL_ERROR', 'virDomainCreate')
  t.match(e.message, /already running/)
})

t.test('snapshots: create, list, current, XML, revert, delete', async (t) => {
  const h = await open(t)
  t.same(await h.listSnapshots('test'), [])
  t.equal(await h.currentSnapshot('test'), null)

  t.equal(await h.createSnapshot('test', snapshotXml('ready', 'kiosk <ready> & running')), 'ready')
  const [ready] = await h.listSnapshots('test')
  t.match(ready, { name: 'ready', state: 'running', hasMemory: true, isCurrent: true, description: 'kiosk <ready> & running' })
  t.ok(ready!.creationTime > 1_600_000_000, 'creation time from the XML')
  t.equal(await h.currentSnapshot('test'), 'ready')
  t.match(await h.snapshotXml('test', 'ready'), /<name>ready<\/name>/)

  await h.destroy('test')
  await h.createSnapshot('test', snapshotXml('off'))
  t.match((await h.listSnapshots('test')).find((s) => s.name === 'off'), { state: 'shutoff', hasMemory: false, isCurrent: true })

  // Revert forces the domain to run, even from a shut-off domain.
  await h.revertToSnapshot('test', 'ready')
  t.match(await h.domainState('test'), { state: 'running', reasonName: 'from_snapshot' })
  t.equal(await h.currentSnapshot('test'), 'ready')

  await h.deleteSnapshot('test', 'off')
  await h.deleteSnapshot('test', 'ready', { children: true })
  t.same(await h.listSnapshots('test'), [])
})

t.test('unknown snapshot and bad snapshot XML', async (t) => {
  const h = await open(t)
  await rejectsWith(t, h.revertToSnapshot('test', 'nope'), 'VIR_ERR_NO_DOMAIN_SNAPSHOT', 'virDomainSnapshotLookupByName')
  await rejectsWith(t, h.snapshotXml('test', 'nope'), 'VIR_ERR_NO_DOMAIN_SNAPSHOT')
  await rejectsWith(t, h.deleteSnapshot('test', 'nope'), 'VIR_ERR_NO_DOMAIN_SNAPSHOT')
  await rejectsWith(t, h.createSnapshot('test', '<not-a-snapshot'), 'VIR_ERR_XML_DETAIL', 'virDomainSnapshotCreateXML')
  await h.createSnapshot('test', snapshotXml('ready'))
  // Same name twice: libvirt refuses (the snapshot service keeps revisions instead).
  const e = await h.createSnapshot('test', snapshotXml('ready')).catch((err: LibvirtError) => err)
  t.type(e, LibvirtError)
})

t.test('guest agent: the test driver has none, and says so as a typed error', async (t) => {
  const h = await open(t)
  await rejectsWith(t, h.agentCommand('test', '{"execute":"guest-ping"}', 2), 'VIR_ERR_NO_SUPPORT', 'virDomainQemuAgentCommand')
})

t.test('screenshot through a libvirt stream', async (t) => {
  const h = await open(t)
  const shot = await h.screenshot('test')
  t.equal(shot.mimeType, 'image/png')
  t.same([...shot.data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'PNG signature')
})

t.test('lifecycle events arrive as typed JS events', async (t) => {
  const h = await open(t)
  const seen: LifecycleEvent[] = []
  const off = h.onLifecycle((e) => seen.push(e))
  await h.createSnapshot('test', snapshotXml('ready'))
  await h.destroy('test')
  await h.revertToSnapshot('test', 'ready')
  // The bound is a hang detector only: the loop ends as soon as both events are in.
  const deadline = Date.now() + 60_000
  while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.match(seen, [
    { domain: 'test', type: 'stopped', detailName: 'destroyed' },
    { domain: 'test', type: 'started', detailName: 'from_snapshot' }
  ])
  off()
  // A listener still subscribed sees the next event; by then the removed one would have too.
  const next = new Promise<void>((resolve) => { const offNext = h.onLifecycle(() => { offNext(); resolve() }) })
  await h.destroy('test')
  await next
  t.equal(seen.length, 2, 'no events after unsubscribing')
})

t.test('calls on one connection are serialized and all complete', async (t) => {
  const h = await open(t)
  const order: number[] = []
  const calls = Array.from({ length: 200 }, (_, i) => h.domainState('test').then((s) => { order.push(i); return s.state }))
  const states = await Promise.all(calls)
  t.ok(states.every((s) => s === 'running'))
  t.same(order, [...order].sort((a, b) => a - b), 'completed in the order they were issued')
})

t.test('a closed connection refuses calls with a clear error and connect() again', async (t) => {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  const events: string[] = []
  h.onConnection((e) => events.push(e.type))
  await h.close()
  t.equal(h.connected, false)
  const e = await rejectsWith(t, h.domainState('test'), 'NOT_CONNECTED')
  t.ok(e.isDisconnected)
  t.match(e.message, /not connected to libvirt at test:\/\/\/default/)
  await t.rejects(h.connect(), /closed/)
  await h.close() // idempotent
})

t.test('a daemon that is not there: typed error from virConnectOpen', async (t) => {
  const h = openHypervisor('qemu:///system?socket=/nonexistent/libvirt-sock', { reconnect: false })
  t.teardown(() => h.close())
  const e = await rejectsWith(t, h.connect(), 'VIR_ERR_SYSTEM_ERROR', 'virConnectOpen')
  t.match(e.message, /nonexistent\/libvirt-sock/)
  t.equal(h.connected, false)
})

/** A child that has not exited after this is stuck, not slow (it needs ~2 s idle; tsx startup included). */
const CHILD_HANG_MS = 60_000

t.test('in a child process: no libvirt output on stderr, and the process exits after close()', async (t) => {
  const script = `
    import { openHypervisor } from ${JSON.stringify(fileURLToPath(new URL('../../src/libvirt/index.ts', import.meta.url)))}
    const h = openHypervisor('test:///default', { reconnect: false })
    await h.connect()
    await h.domainState('ghost').catch(() => {})
    await h.revertToSnapshot('test', 'nope').catch(() => {})
    await h.close()
    console.log('closed')
  `
  const started = Date.now()
  // The timeout only detects a hang (a process kept alive by a libvirt thread): it kills with SIGTERM.
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: CHILD_HANG_MS })
  t.equal(child.signal, null, 'exited on its own (no event-loop thread left behind), not killed by the hang detector')
  t.equal(child.status, 0, child.stderr)
  t.equal(child.stdout.trim(), 'closed')
  t.equal(child.stderr, '', 'libvirt printed nothing')
  t.comment(`child ran ${Date.now() - started} ms`)
})

t.test('process.exit right after close() does not hang (as close-with-grace does on SIGTERM)', async (t) => {
  // A worker blocked in libvirt's event loop, waiting for the main thread, would never be joined
  // by process.exit: close() must return only once that thread is idle.
  const script = `
    import { openHypervisor } from ${JSON.stringify(fileURLToPath(new URL('../../src/libvirt/index.ts', import.meta.url)))}
    const h = openHypervisor('test:///default', { reconnect: false })
    await h.connect()
    h.onLifecycle(() => {})
    await h.destroy('test')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    await h.close()
    process.exit(0)
  `
  const started = Date.now()
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: CHILD_HANG_MS })
  t.equal(child.signal, null, 'process.exit returned: not killed by the hang detector')
  t.equal(child.status, 0, child.stderr)
  t.comment(`child ran ${Date.now() - started} ms (1500 ms of it its own wait)`)
})
