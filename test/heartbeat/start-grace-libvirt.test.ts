// issue 14, failure 5: with libvirt unreachable when the service started, the start grace ran
// out while waiting for it and reverts were attempted before libvirt was ever reached. The grace
// must count from the first VM state read, and no timer may act before it (fake clock; libvirt's
// in-process test driver, connected only when the test says so).
import t from 'tap'
import pino from 'pino'
import { Writable } from 'node:stream'
import { VM_DEFAULTS } from '../../src/config/schema.ts'
import { openHypervisor, snapshotXml } from '../../src/libvirt/index.ts'
import type { RevertEvent, WatchdogAuditEntry } from '../../src/heartbeat/watchdog.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import { newWatchdog } from '../helpers/watchdog.ts'

t.test('libvirt unreachable at start: no grace runs down, no revert, until the VM state was read', async (t) => {
  const h = openHypervisor('test:///default', { reconnect: false })
  t.teardown(() => h.close())
  const clock = new FakeClock(Date.parse('2026-11-29T12:00:00Z'))
  const logs: Array<{ msg: string }> = []
  const log = pino({ level: 'debug' }, new Writable({ write (chunk, _enc, cb) { logs.push(JSON.parse(String(chunk))); cb() } }))
  const audit: WatchdogAuditEntry[] = []
  const w = newWatchdog({
    vm: { ...VM_DEFAULTS, name: 'test', heartbeat_timeout: 1, startup_grace: 2, heartbeat_check_interval: 60, post_revert_grace: 1 },
    hypervisor: h,
    log,
    clock,
    timers: clock,
    persistence: { load: async () => null, save: async () => {} },
    audit: { append: async (e: WatchdogAuditEntry) => { audit.push(e) } }
  })
  t.teardown(() => w.close())
  const reverts: RevertEvent[] = []
  w.on('revert', (e) => reverts.push(e))
  const advance = async (ms: number) => {
    for (let moved = 0; moved < ms; moved += 50) {
      clock.advance(50)
      await w.settled()
      await clock.flush()
    }
  }

  t.equal(h.connected, false)
  await w.start()
  await advance(10_000) // five times the start grace
  t.same(reverts, [], 'no revert attempted while libvirt was never reached')
  t.equal(w.view().state, 'starting')
  t.notOk(audit.some((e) => /revert/.test(e.kind)), 'nothing about a revert in the audit trail')

  await h.connect()
  await h.createSnapshot('test', snapshotXml('ready'))
  // The connection event reaches the watchdog, which reads the VM state (real time: libvirt's thread).
  const end = Date.now() + 10_000
  while (!logs.some((l) => /the start grace runs from now/.test(l.msg)) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(logs.some((l) => /the start grace runs from now/.test(l.msg)), 'the grace starts once the VM state is known')
  await advance(1500)
  t.same(reverts, [], 'still inside the grace that began at the first read')
  await advance(1000)
  t.match(reverts[0], { phase: 'start', reason: 'no_heartbeat_after_start' }, 'then a missing heartbeat reverts, as usual')
})
