// The sampler against the real thing: libvirt's test driver (whose screen never changes, so it
// is "frozen") and the real Watchdog, which gets one revert request and reverts the VM.
import t from 'tap'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VM_DEFAULTS, type VmConfig } from '../../src/config/schema.ts'
import { newWatchdog } from '../helpers/watchdog.ts'
import { openHypervisor, snapshotXml, type LifecycleEvent } from '../../src/libvirt/index.ts'
import { screenSchema } from '../../src/screen/config.ts'
import { screenChanged, screenSignature } from '../helpers/screen-probe.ts'
import { ScreenSampler } from '../../src/screen/sampler.ts'
import { AuditLog, StateFile } from '../../src/store/index.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

t.test('a frozen test-driver screen: one revert by the real watchdog, reason screen_frozen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-screen-wd-'))
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  await h.createSnapshot('test', snapshotXml('ready'))
  const events: LifecycleEvent[] = []
  t.teardown(h.onLifecycle((e) => events.push(e)))

  const clock = new FakeClock(Date.parse('2026-11-23T10:00:00Z'))
  // A grace longer than the 300 s the test waits in it: the only revert is the screen's.
  const vm: VmConfig = { ...VM_DEFAULTS, name: 'test', heartbeat_check_interval: 60, heartbeat_timeout: 600, post_revert_grace: 600 }
  const audit = new AuditLog({ dir })
  const silent = { debug () {}, info () {}, warn () {}, error () {} }
  const watchdog = newWatchdog({ vm, hypervisor: h, log: silent, clock, timers: clock, persistence: new StateFile(join(dir, 'state.json')), audit })
  await watchdog.start()
  t.teardown(() => watchdog.close())
  const sampler = new ScreenSampler({ vm: 'test', config: screenSchema.parse({ enabled: true, interval: 10, frozen_after: 60 }), source: h, target: watchdog, clock, timers: clock })
  t.teardown(() => sampler.stop())
  sampler.start()

  const run = async (seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      clock.advance(1000)
      await sampler.idle()
    }
  }
  await run(100)
  t.equal(sampler.view().last_sample_at, null, 'no sample before the first heartbeat (starting)')
  watchdog.heartbeat({ seq: 1 })
  t.equal(watchdog.view().state, 'healthy')
  await run(65)
  t.equal(watchdog.view().lastRevert, null, 'not yet: frozen_after counts from the first sample')
  await run(10)
  t.match(watchdog.view(), { state: 'reverting', lastRevert: { reason: 'screen_frozen' } }, 'frozen for 60 s: reverting')
  await watchdog.runExclusive('test: wait for the revert', async () => {})
  // Lifecycle events come from libvirt's event thread, possibly after the call returned.
  await until(() => events.some((e) => e.detailName === 'from_snapshot'))
  t.ok(events.some((e) => e.detailName === 'from_snapshot'), 'libvirt reverted the VM')
  t.equal(watchdog.view().state, 'grace')
  await run(300)
  t.equal(watchdog.view().counters.reverts, 1, 'one revert: no sampling during the grace')
  await watchdog.close()
  const requests = (await audit.read({ limit: 50 })).filter((e) => e.kind === 'revert_request')
  t.match(requests, [{ reason: 'screen_frozen', outcome: 'started' }])
  await audit.close()
})

t.test('probe: screenSignature and screenChanged for e2e tests', async (t) => {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  const a = await screenSignature(h, 'test')
  const b = await screenSignature(h, 'test')
  t.equal(screenChanged(a, b), false, 'the test driver\'s screen stands still')
  const inverted = { ...b, data: b.data.map((v) => 255 - v) }
  t.equal(screenChanged(a, inverted), true)
})

async function until (check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5))
}
