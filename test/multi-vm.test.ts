// Several VMs on one host, through the real app (app.inject) on libvirt's test driver with a
// node file of two running domains (test/fixtures/two-vms.xml): which VM a heartbeat belongs
// to, the per-VM routes, unknown VMs, a revert of one VM leaving the other alone, a schedule
// that closes one VM only, and each VM's screen.
import t, { type Test } from 'tap'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, InjectOptions } from 'fastify'
import type { Hypervisor, LifecycleEvent } from '../src/libvirt/index.ts'
import { decodePng } from '../src/screen/index.ts'
import { build, T0 } from './helpers/app.ts'
import { FakeClock } from './helpers/fake-clock.ts'

const NODE_FILE = fileURLToPath(new URL('./fixtures/two-vms.xml', import.meta.url))
const B_ADDRESS = '192.168.122.12'

interface Harness { app: FastifyInstance, h: Hypervisor, events: LifecycleEvent[], clock: FakeClock }

/** Time stands still (a fake clock nobody moves): the only reverts are the ones a test asks for. */
async function twoVmApp (t: Test, extra: Record<string, unknown> = {}, start = T0): Promise<Harness> {
  const clock = new FakeClock(start)
  const { app, lifecycle } = await build(t, {
    uri: `test://${NODE_FILE}`,
    clock,
    timers: clock,
    config: {
      libvirt_uri: `test://${NODE_FILE}`,
      vm_name: 'exhibit-a',
      timezone: 'Europe/Berlin',
      vms: [{ name: 'exhibit-b', guest_addresses: [B_ADDRESS], ...extra }],
      security: { guest_revert_min_interval: 0 }
    }
  })
  return { app, h: app.hypervisor, events: lifecycle, clock }
}

const views = (app: FastifyInstance) => Object.fromEntries([...app.vms].map(([name, vm]) => [name, vm.watchdog.view()]))

t.test('both VMs are watched and listed', async (t) => {
  const { app, h } = await twoVmApp(t)
  t.same([...app.vms.keys()], ['exhibit-a', 'exhibit-b'])
  t.equal(app.defaultVm, 'exhibit-a')
  const res = await app.inject({ url: '/api/v1/vms' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.default_vm, 'exhibit-a')
  t.match(body.vms, [
    { name: 'exhibit-a', default: true, state: 'starting', guest_addresses: [], schedule: null, screen: { enabled: false }, links: { status: '/api/v1/vms/exhibit-a/status' } },
    { name: 'exhibit-b', default: false, state: 'starting', guest_addresses: [B_ADDRESS], links: { screen: '/api/v1/vms/exhibit-b/screen.png' } }
  ])
  for (const vm of ['exhibit-a', 'exhibit-b']) {
    // The snapshot service names versions ready~<time>; a revert uses the newest.
    t.ok((await h.listSnapshots(vm)).some((s) => s.name.startsWith('ready~')), `${vm}: its snapshot was created at start (test driver)`)
  }
})

t.test('heartbeats are attributed: vm field, source address, default VM, per-VM path', async (t) => {
  const { app } = await twoVmApp(t)
  const beat = async (options: InjectOptions) => {
    const res = await app.inject(options)
    t.equal(res.statusCode, 200, JSON.stringify(res.json()))
    return res.json().details.vm as string
  }
  t.equal(await beat({ method: 'POST', url: '/api/v1/heartbeat', payload: { vm: 'exhibit-b', seq: 1 } }), 'exhibit-b', 'explicit vm in the body')
  t.equal(await beat({ url: '/api/v1/heartbeat?vm=exhibit-b&seq=2' }), 'exhibit-b', 'explicit vm in the query')
  t.equal(await beat({ url: '/api/v1/heartbeat', remoteAddress: B_ADDRESS }), 'exhibit-b', 'old script from B\'s address')
  t.equal(await beat({ url: '/api/v1/heartbeat', remoteAddress: `::ffff:${B_ADDRESS}` }), 'exhibit-b', 'the same address, IPv4-mapped')
  t.equal(await beat({ url: '/api/v1/heartbeat' }), 'exhibit-a', 'old script from an unmapped address: the default VM')
  t.equal(await beat({ url: '/api/v1/heartbeat', remoteAddress: '192.168.122.50' }), 'exhibit-a')
  t.equal(await beat({ url: '/api/v1/heartbeat?vm=exhibit-b', remoteAddress: B_ADDRESS }), 'exhibit-b', 'a mapped guest naming its own VM')
  t.equal(await beat({ url: '/api/v1/vms/exhibit-b/heartbeat?seq=3' }), 'exhibit-b', 'per-VM path')
  // A guest mapped to B by address may not speak for A (it could hide A's hang, or revert it).
  for (const options of [
    { url: '/api/v1/heartbeat?vm=exhibit-a', remoteAddress: B_ADDRESS },
    { method: 'POST' as const, url: '/api/v1/vms/exhibit-a/heartbeat', remoteAddress: B_ADDRESS },
    { url: '/api/v1/revert/request?vm=exhibit-a&reason=x', remoteAddress: B_ADDRESS }
  ]) {
    const res = await app.inject(options)
    t.equal(res.statusCode, 403, options.url)
    t.match(res.json(), { error: { code: 'FORBIDDEN', message: /is the guest of "exhibit-b"/ } })
  }
  const v = views(app)
  t.equal(v['exhibit-a']!.heartbeatsTotal, 2, 'the refused ones did not count')
  t.equal(v['exhibit-b']!.heartbeatsTotal, 6)
  t.equal(v['exhibit-b']!.lastSeq, 3)
  t.same([v['exhibit-a']!.state, v['exhibit-b']!.state], ['healthy', 'healthy'])
})

t.test('per-VM status; unknown VMs are 404 UNKNOWN_VM', async (t) => {
  const { app } = await twoVmApp(t)
  const b = await app.inject({ url: '/api/v1/vms/exhibit-b/status' })
  t.equal(b.statusCode, 200)
  t.match(b.json(), { vm_name: 'exhibit-b', vm_state: 'running' })
  t.match((await app.inject({ url: '/api/v1/status' })).json(), { vm_name: 'exhibit-a' }, 'the single-VM path: the default VM')
  for (const url of ['/api/v1/vms/nope/status', '/api/v1/vms/nope/heartbeat', '/api/v1/heartbeat?vm=nope', '/api/v1/vms/nope/screen.png']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 404, url)
    t.equal(res.json().error.code, 'UNKNOWN_VM', url)
    t.match(res.json().error.message, /exhibit-a, exhibit-b/, 'names the VMs that are watched')
  }
  const post = await app.inject({ method: 'POST', url: '/api/v1/vms/nope/revert/request' })
  t.equal(post.json().error.code, 'UNKNOWN_VM')
})

t.test('a revert of one VM does not touch the other', async (t) => {
  const { app, h, events } = await twoVmApp(t)
  const res = await app.inject({ method: 'POST', url: '/api/v1/vms/exhibit-b/revert/request', payload: { reason: 'process_missing' }, remoteAddress: B_ADDRESS })
  t.equal(res.statusCode, 202, JSON.stringify(res.json()))
  t.match(res.json().details, { vm: 'exhibit-b', outcome: 'started' })
  await until(() => app.vms.get('exhibit-b')!.watchdog.view().state === 'grace')
  t.match(app.vms.get('exhibit-b')!.watchdog.view(), { state: 'grace', lastRevert: { reason: 'process_missing', source: 'guest' } })
  t.match(app.vms.get('exhibit-a')!.watchdog.view(), { state: 'starting', lastRevert: null }, 'A: no revert')
  // Lifecycle events come from libvirt's event thread, possibly after the call returned.
  await until(() => events.some((e) => e.domain === 'exhibit-b' && e.detailName === 'from_snapshot'))
  t.ok(events.some((e) => e.domain === 'exhibit-b' && e.detailName === 'from_snapshot'), 'libvirt reverted B')
  t.same(events.filter((e) => e.domain === 'exhibit-a'), [], 'no lifecycle event of A')
  t.equal((await h.domainState('exhibit-a')).state, 'running')
  t.equal((await h.domainState('exhibit-b')).state, 'running')

  // An old guest script on B asking for a revert is attributed by its address too.
  const byAddress = await app.inject({ url: '/api/v1/revert/request?reason=idle', remoteAddress: B_ADDRESS })
  t.match(byAddress.json().details, { vm: 'exhibit-b' })
  t.same(events.filter((e) => e.domain === 'exhibit-a'), [], 'still nothing on A')
})

t.test('a schedule closes one VM only', async (t) => {
  // Monday 2026-11-23, 22:00 in Berlin: B's opening hours are over; A has none.
  const { app, h } = await twoVmApp(t, { schedule: { hours: { mon: '09:00-18:00' } } }, Date.parse('2026-11-23T21:00:00Z'))
  t.match(app.vms.get('exhibit-b')!.watchdog.view(), { state: 'maintenance', maintenance: { reason: 'closed' } })
  await until(async () => (await h.domainState('exhibit-b')).state === 'shutoff')
  t.equal((await h.domainState('exhibit-b')).state, 'shutoff', 'B shut down for the night')
  t.equal((await h.domainState('exhibit-a')).state, 'running', 'A untouched')
  const list = (await app.inject({ url: '/api/v1/vms' })).json()
  t.match(list.vms[1], { name: 'exhibit-b', state: 'maintenance', maintenance: { reason: 'closed' }, schedule: { open: false, next_action: { kind: 'open' } } })
  t.equal(list.vms[0].schedule, null)
  t.match((await app.inject({ url: '/api/v1/vms/exhibit-b/status' })).json(), { schedule: { timezone: 'Europe/Berlin', open: false, next_change: '2026-11-30T08:00:00.000Z' } }, 'status shows the next opening (B opens Mondays only)')
  t.match((await app.inject({ url: '/api/v1/status' })).json(), { schedule: null, screen: { enabled: false } })
  const screen = await app.inject({ url: '/api/v1/vms/exhibit-b/screen.png' })
  t.equal(screen.statusCode, 409, 'no screen while shut off')
  t.match(screen.json().error.message, /shutoff/)
})

t.test('each VM\'s screen', async (t) => {
  const { app } = await twoVmApp(t)
  for (const url of ['/api/v1/screen.png', '/api/v1/vms/exhibit-b/screen.png', '/api/v1/screen.png?vm=exhibit-b']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 200, url)
    t.equal(res.headers['content-type'], 'image/png')
    t.match(res.headers['x-screen-taken-at'], /^\d{4}-\d\d-\d\dT/)
    const image = decodePng(res.rawPayload)
    t.ok(image.width <= 320 && image.width > 0, `${url}: ${image.width}x${image.height}`)
  }
})

/** Waits for a condition that libvirt's worker threads make true (no fixed sleep); the bound only catches a hang. */
async function until (check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  throw new Error(`condition not met within ${timeoutMs} ms`)
}
