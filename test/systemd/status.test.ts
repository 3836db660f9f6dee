// issue 14, failure 3: STATUS= was sent once, at READY, and `systemctl status` went on saying
// "libvirt ... connected" after libvirt was gone. The line is rebuilt on every change and sent
// when it differs.
import t from 'tap'
import { STATUS_COALESCE_MS, statusLine, statusUpdater, type StatusFacts, type StatusView } from '../../src/systemd/status.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

const vm = (over: Partial<StatusView> = {}): StatusView => ({ vm: 'exhibit', state: 'healthy', maintenance: null, exhausted: null, vmRunning: true, ...over })
const facts = (over: Partial<StatusFacts> = {}): StatusFacts => ({ listening: 'listening on 0.0.0.0:8000', uri: 'qemu:///system', connected: true, everConnected: true, views: [vm()], ...over })

t.test('the line says what a technician needs: libvirt, each VM, maintenance, exhausted', async (t) => {
  t.equal(statusLine(facts()), 'listening on 0.0.0.0:8000; libvirt qemu:///system connected; exhibit: healthy, VM running')
  t.equal(statusLine(facts({ connected: false, everConnected: false, views: [vm({ state: 'starting', vmRunning: null })] })),
    'listening on 0.0.0.0:8000; waiting for libvirt at qemu:///system (no reverts until it answers); exhibit: starting')
  t.match(statusLine(facts({ connected: false })), /libvirt qemu:\/\/\/system LOST, reconnecting \(no reverts until it is back\)/)
  t.match(statusLine(facts({ views: [vm({ state: 'maintenance', maintenance: { reason: 'technician', until: Date.UTC(2026, 10, 29, 17, 30) } })] })), /exhibit: maintenance \(technician\) until 2026-11-29 17:30 UTC/)
  t.match(statusLine(facts({ views: [vm({ state: 'maintenance', maintenance: { reason: 'config', until: null } })] })), /exhibit: maintenance \(config\)$/)
  t.match(statusLine(facts({ views: [vm({ state: 'exhausted', exhausted: { reason: '5 reverts within 3600 s' } })] })), /exhibit: EXHAUSTED, reverts stopped \(5 reverts within 3600 s\); POST \/api\/v1\/reset/)
  t.match(statusLine(facts({ views: [vm({ state: 'late', vmRunning: false }), vm({ vm: 'second' })] })), /exhibit: late, VM not running; second: healthy, VM running$/)
  t.match(statusLine(facts({ views: [] })), /no VM watched$/)
})

t.test('READY=1 carries the first line; later lines go out only when they change', async (t) => {
  const sent: string[] = []
  let f = facts({ connected: false, everConnected: false })
  const u = statusUpdater({ ready: (s?: string) => sent.push(`READY ${s ?? ''}`), status: (s: string) => sent.push(`STATUS ${s}`) }, () => statusLine(f))
  u.ready()
  u.update() // nothing changed
  f = facts()
  u.update()
  u.update()
  f = facts({ connected: false })
  u.update()
  t.same(sent.map((s) => s.replace(/;.*$/, '').replace(/listening on \S+ ?/, '')), ['READY ', 'STATUS ', 'STATUS '])
  t.equal(sent.length, 3)
  t.match(sent[0], /^READY listening on .*waiting for libvirt/)
  t.match(sent[1], /libvirt qemu:\/\/\/system connected/)
  t.match(sent[2], /LOST/)
})

t.test('a view that throws (closing) sends nothing and does not throw', async (t) => {
  const sent: string[] = []
  const u = statusUpdater({ ready: () => sent.push('READY'), status: (s: string) => sent.push(s) }, () => { throw new Error('closing') })
  u.ready()
  u.update()
  t.same(sent, ['READY'])
})

t.test('updateSoon: a burst of changes builds the line (which walks every VM) once', async (t) => {
  const clock = new FakeClock(0)
  const sent: string[] = []
  let built = 0
  let f = facts({ views: Array.from({ length: 200 }, (_, i) => vm({ vm: `kiosk-${i}`, state: 'starting' })) })
  const u = statusUpdater({ ready: () => sent.push('READY'), status: (s: string) => sent.push(s) }, () => { built++; return statusLine(f) }, clock)
  u.ready()
  t.equal(built, 1)
  // Every VM's first heartbeat: 200 changes, spread over 200 ms.
  f = facts({ views: Array.from({ length: 200 }, (_, i) => vm({ vm: `kiosk-${i}` })) })
  for (let i = 0; i < 200; i++) {
    u.updateSoon()
    clock.advance(1)
  }
  t.equal(built, 1, 'nothing built before the timer runs')
  clock.advance(STATUS_COALESCE_MS - 200)
  t.equal(built, 2, 'one line for the whole burst')
  t.equal(sent.length, 2)
  t.match(sent[1], /kiosk-199: healthy, VM running$/)
  u.updateSoon()
  u.close()
  clock.advance(10)
  t.equal(built, 2, 'close() drops a pending update')
  t.equal(clock.pending, 0)
})
