// The real service (a child process: node src/cli.ts serve) watching a real QEMU guest through
// libvirtd: a hung guest, a crashed VM (virsh destroy) and a guest's own revert request each end
// in a revert to `ready`, after which heartbeats come back with the guest's sequence number back
// at its value when the snapshot was taken.
import t, { type Test } from 'tap'
import { canRunE2E, domainState, virsh } from '../../harness/guest.ts'
import { E2E_HEARTBEAT_TIMEOUT_S, revertCycle, ServiceRig, waitForAudit, type AuditEntryView } from '../../harness/service.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('the service reverts a real VM: hang, crash, guest request', serviceWatchdog)
}

async function serviceWatchdog (t: Test): Promise<void> {
  const fileStart = Date.now()
  const rig = new ServiceRig('kvw-e2e-service-watchdog')
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start()
  const svc = rig.service!
  const b = rig.beats!
  const control = rig.control!
  t.comment(`boot + service start until heartbeats are seen through it: ${Date.now() - fileStart} ms`)
  t.equal((await svc.get('/api/v1/status')).libvirt.connected, true, 'the service is connected to qemu:///system')

  const snap = await rig.takeSnapshot()
  const status0 = await svc.get('/api/v1/status')
  t.equal(status0.snapshot_target, 'ready', 'the service sees the snapshot ready')
  t.equal(status0.watchdog.state, 'healthy', 'the watchdog is healthy before the scenarios')

  await t.test('hang: no heartbeat for heartbeat_timeout, revert, heartbeats come back from the snapshot', async (t) => {
    await b.waitForBeat(60_000, 0, (beat) => (beat.seq ?? 0) >= snap.after + 4)
    const sent = Date.now()
    control.setCommand('hang')
    const cycle = await revertCycle(svc, b, sent, (e) => e.reason === 'heartbeat_timeout')
    const startedAt = Date.parse(cycle.started.ts)
    t.equal(cycle.started.source, 'auto', 'an automatic revert')
    // When it fired is the unit tests' business (fake clock); here: the service decided it at a
    // deadline, and the guest had beaten up to the hang (the last seq seen is past the snapshot's).
    const decided = svc.logs.find((l) => l.msg === 'revert: heartbeat_timeout' && typeof l.dueAt === 'number' && l.receivedAt >= sent)
    t.ok(decided !== undefined && (decided.dueAt as number) <= startedAt, 'the service logged the revert with the deadline it acted on')
    t.ok(rig.isSnapshotSeq(cycle.firstBeat.seq),
      `first seq after the revert (${cycle.firstBeat.seq}) is the snapshot's (${snap.before}..${snap.after}), not the ${b.maxSeq(startedAt)} reached before`)
    t.equal(cycle.status.watchdog.last_revert.reason, 'heartbeat_timeout', 'status last_revert names the reason')
    t.comment(`deadline to revert call: ${String(cycle.finished.deadlineLagMs)} ms; revert call ${String(cycle.finished.durationMs)} ms; revert start to first heartbeat: ${cycle.status.watchdog.last_revert.recovery_ms} ms (service), ${cycle.firstBeat.at - startedAt} ms (seen by polling)`)
    const reverts = await svc.events('revert_started')
    t.equal(reverts.filter((e) => Date.parse(e.ts) >= sent).length, 1, 'one revert, not more')
  })

  await t.test('crash: virsh destroy, the service sees the VM stopped and reverts (vm_not_running)', async (t) => {
    await b.waitForBeat(60_000, Date.now())
    const destroyAt = Date.now()
    await virsh(['destroy', rig.name])
    const cycle = await revertCycle(svc, b, destroyAt, (e) => e.reason === 'vm_not_running')
    const startedAt = Date.parse(cycle.started.ts)
    t.equal(cycle.started.source, 'auto', 'an automatic revert')
    // Not the heartbeat timeout (the reason says so) and not the safety-net poll: libvirt's
    // lifecycle event for the destroy reached the service.
    const event = svc.logs.find((l) => l.msg === 'libvirt lifecycle event' && l.type === 'stopped' && l.detail === 'destroyed' && l.receivedAt >= destroyAt)
    t.ok(event !== undefined, 'the service got libvirt\'s lifecycle event stopped/destroyed')
    t.comment(`destroy call to revert start: ${startedAt - destroyAt} ms (heartbeat_timeout ${E2E_HEARTBEAT_TIMEOUT_S} s)`)
    t.ok(rig.isSnapshotSeq(cycle.firstBeat.seq), `first seq after the revert (${cycle.firstBeat.seq}) is the snapshot's`)
    t.equal(await domainState(rig.name), 'running', 'the VM runs again')
    const reverts = await svc.events('revert_started')
    t.equal(reverts.filter((e) => Date.parse(e.ts) >= destroyAt).length, 1, 'one revert, not more')
  })

  await t.test('guest request: revert:exhibit_test asks the service, which reverts; the reason is in the audit trail', async (t) => {
    await b.waitForBeat(60_000, Date.now())
    const sent = Date.now()
    control.setCommand('revert:exhibit_test')
    const request = await waitForAudit(svc, 'revert_request', 60_000, sent, (e) => e.reason === 'exhibit_test')
    t.equal(request.outcome, 'started', 'the request was granted')
    t.equal(request.source, 'guest', 'the request came from the guest')
    const cycle = await revertCycle(svc, b, sent, (e) => e.reason === 'exhibit_test')
    t.equal(cycle.started.source, 'guest', 'a guest-caused revert')
    t.ok(rig.isSnapshotSeq(cycle.firstBeat.seq), `first seq after the revert (${cycle.firstBeat.seq}) is the snapshot's`)
    const events = (await svc.get('/api/v1/events?limit=50')).events as AuditEntryView[]
    t.ok(events.some((e) => e.kind === 'revert_finished' && e.reason === 'exhibit_test' && e.source === 'guest'), 'GET /api/v1/events has the finished revert with its reason')
    t.same(cycle.status.watchdog.counters.by_reason, { heartbeat_timeout: 1, vm_not_running: 1, 'guest:exhibit_test': 1 }, 'the counters have all three reverts by reason')
  })

  t.notOk(svc.hasExited(), 'the service is still running')
  t.comment(`file total: ${Date.now() - fileStart} ms`)
}
