// A disk-only `ready` on real QEMU (issue 12): EVC's UI lets a technician stop the VM and then
// create the snapshot, which then holds no memory state. The service refuses that for the
// configured snapshot unless asked (allow_stopped=true); taken anyway, a revert to it (start, or
// the VM killed behind the service's back) ends with the VM running and heartbeats back, with no
// vm_not_running loop, and /status never says healthy while libvirt says the VM is off.
import t, { type Test } from 'tap'
import { canRunE2E, sleep, virsh, waitFor } from '../../harness/guest.ts'
import { E2E_HEARTBEAT_TIMEOUT_S, revertCycle, ServiceRig } from '../../harness/service.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('a disk-only ready on a real VM: refused unless allow_stopped; a revert to it starts the VM', diskOnly)
}

async function domstate (name: string): Promise<string> {
  return (await virsh(['domstate', name])).trim()
}

async function diskOnly (t: Test): Promise<void> {
  // A revert to a disk-only snapshot is a cold boot (10-50 s under TCG on a busy machine): a
  // post-revert grace that covers it, so a slow boot is not taken for a failed revert.
  const rig = new ServiceRig('kvw-e2e-disk-only', { extraConfig: { post_revert_grace: 240 } })
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start()
  const svc = rig.service!
  const b = rig.beats!

  const stop = await svc.request('POST', '/api/v1/vm/stop')
  t.equal(stop.status, 202, `vm/stop: ${JSON.stringify(stop.body)}`)
  await waitFor('the VM to be shut off', async () => (await domstate(rig.name)) === 'shut off', 60_000, 200)

  const refused = await svc.request('POST', '/api/v1/snapshot/create')
  t.equal(refused.status, 409, `refused: ${JSON.stringify(refused.body)}`)
  t.equal(refused.body?.error?.code, 'SNAPSHOT_VM_NOT_RUNNING')
  t.match(refused.body?.error?.message, /no memory state/)

  const created = await svc.request('POST', '/api/v1/snapshot/create?allow_stopped=true')
  t.equal(created.status, 201, `allow_stopped: ${JSON.stringify(created.body)}`)
  t.equal(created.body.details.has_memory, false, 'a snapshot of the shut-off VM: disk only')
  const status = await svc.get('/api/v1/status')
  t.equal(status.snapshot_has_memory, false)
  t.match(await virsh(['snapshot-info', rig.name, status.snapshot_target]), /State:\s+shutoff/)

  // Start = a revert to the disk-only snapshot: the VM boots, heartbeats come back.
  const since = Date.now()
  const start = await svc.request('POST', '/api/v1/vm/start')
  t.equal(start.status, 202, `vm/start: ${JSON.stringify(start.body)}`)
  const first = await revertCycle(svc, b, since, (e) => e.reason === 'technician_start')
  t.equal(await domstate(rig.name), 'running', 'the revert to a disk-only snapshot started the VM')
  t.comment(`start to first heartbeat (a cold boot): ${first.firstBeat.at - since} ms`)

  // The VM killed behind the service's back: reverted (vm_not_running) to the disk-only snapshot, running again.
  // A few beats first: the rebooted guest counts from 1 again, and the harness knows the beat
  // after a revert by a seq below the last one before it.
  await b.waitForBeat(60_000, Date.now(), (beat) => (beat.seq ?? 0) >= 4)
  const killedAt = Date.now()
  await virsh(['destroy', rig.name])
  const second = await revertCycle(svc, b, killedAt, (e) => e.reason === 'vm_not_running')
  t.equal(await domstate(rig.name), 'running')
  t.comment(`destroy to first heartbeat: ${second.firstBeat.at - killedAt} ms`)

  // Longer than heartbeat_timeout and two state polls: no further revert, healthy and running.
  const quietFrom = Date.now()
  for (let i = 0; i < E2E_HEARTBEAT_TIMEOUT_S + 2; i++) {
    await sleep(1000)
    const s = await svc.get('/api/v1/status')
    if (s.watchdog.state === 'healthy') t.equal(s.vm_state, 'running', 'healthy only while libvirt says running')
  }
  const later = (await svc.events('revert_started')).filter((e) => Date.parse(e.ts) >= quietFrom)
  t.same(later.map((e) => e.reason), [], 'no revert loop')
  t.equal((await svc.get('/api/v1/status')).watchdog.state, 'healthy')
}
