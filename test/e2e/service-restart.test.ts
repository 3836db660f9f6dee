// The real service and a real guest, second part: the service killed (SIGKILL) and started again
// while the guest is healthy does not revert it; the guest agent answers through our own binding;
// a snapshot created through the API (`ready~TIMESTAMP`, see src/snapshot/README.md) is what the
// next revert goes to, on libvirt 9 + QEMU 7.2 internal snapshots.
import t, { type Test } from 'tap'
import { openHypervisor } from '../../src/libvirt/index.ts'
import { LibvirtError } from '../../src/libvirt/errors.ts'
import { canRunE2E, sleep, virsh } from '../../harness/guest.ts'
import { E2E_HEARTBEAT_TIMEOUT_S, revertCycle, ServiceRig, startService } from '../../harness/service.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('the service on a real VM: restart without a revert, guest agent, snapshot revisions', serviceRestart)
}

async function serviceRestart (t: Test): Promise<void> {
  const fileStart = Date.now()
  const rig = new ServiceRig('kvw-e2e-service-restart')
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start()
  const b = rig.beats!
  const control = rig.control!
  const snap = await rig.takeSnapshot()

  await t.test('the service killed with SIGKILL and started again: no revert, the guest goes on', async (t) => {
    await b.waitForBeat(60_000, Date.now())
    const seqBeforeKill = b.maxSeq()
    await rig.service!.kill()
    // Longer than heartbeat_timeout: the restarted service must not count the gap against the guest.
    await sleep(E2E_HEARTBEAT_TIMEOUT_S * 1000 + 1000)
    const restarted = rig.service = await startService(rig.config!)
    const restartedAt = restarted.spawnedAt
    const firstAfter = await b.waitForBeat(60_000, restartedAt)
    t.ok((firstAfter.seq ?? -1) > seqBeforeKill, `the guest's seq went on (${seqBeforeKill} before the kill, ${firstAfter.seq} after the restart)`)
    // Past heartbeat_timeout after the restart (the first heartbeat ended the startup grace).
    await sleep(E2E_HEARTBEAT_TIMEOUT_S * 1000 + 2000)
    const reverts = (await restarted.events('revert_started')).filter((e) => Date.parse(e.ts) >= restartedAt - 1000)
    t.same(reverts, [], 'no revert after the restart')
    const seqs = b.beats.filter((beat) => beat.at >= restartedAt).map((beat) => beat.seq ?? -1)
    t.ok(seqs.length >= 2 && seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), `the seq only goes up after the restart: ${seqs.join(',')}`)
    const status = await restarted.get('/api/v1/status')
    t.equal(status.watchdog.state, 'healthy', 'the restarted watchdog is healthy')
    t.equal(status.libvirt.connected, true, 'and connected to libvirt')
    t.comment(`restart to first heartbeat through the new service: ${firstAfter.at - restartedAt} ms`)
  })

  await t.test('the guest agent answers through our binding (virDomainQemuAgentCommand)', async (t) => {
    const h = openHypervisor('qemu:///system', { reconnect: false })
    t.teardown(() => h.close())
    await h.connect()
    const t0 = performance.now()
    const reply = await h.agentCommand(rig.name, '{"execute":"guest-ping"}', 5)
    t.same(JSON.parse(reply), { return: {} }, `guest-ping answers {"return":{}} (${Math.round(performance.now() - t0)} ms)`)
    const info = JSON.parse(await h.agentCommand(rig.name, '{"execute":"guest-info"}', 5))
    t.match(info, { return: { version: String } }, `guest-info names the agent version (${String(info.return?.version)})`)
    const error = await h.agentCommand(rig.name, '{"execute":"guest-no-such-command"}', 5).then(() => null, (err: unknown) => err)
    t.ok(error instanceof LibvirtError, 'an unknown agent command rejects with a LibvirtError')
    t.match((error as Error).message, /guest-no-such-command|not found|unknown|not supported/i, `naming what failed: ${(error as Error).message}`)
  })

  await t.test('POST /api/v1/snapshot/create makes ready~TIMESTAMP; the next revert goes to it', async (t) => {
    const svc = rig.service!
    await b.waitForBeat(60_000, 0, (beat) => (beat.seq ?? 0) >= snap.after + 6)
    const seqBefore = b.maxSeq()
    const created = await svc.request('POST', '/api/v1/snapshot/create')
    t.equal(created.status, 201, `the API created the snapshot: ${JSON.stringify(created.body)}`)
    t.equal(created.body.details.previous_kept_as, 'ready', 'the old ready is kept as a revision')
    const seqAfter = (await b.waitForBeat(60_000, Date.now())).seq ?? -1
    const status = await svc.get('/api/v1/status')
    const target: string = status.snapshot_target
    t.match(target, /^ready~\d{8}T\d{6}\.\d{3}Z$/, `the active version is a revision: ${target}`)
    t.equal(status.snapshot_has_memory, true, 'with memory state')
    const names: string[] = (await svc.get('/api/v1/snapshots')).snapshots
    t.same([...names].sort(), ['ready', target].sort(), 'libvirt lists both versions')
    t.ok(seqBefore > snap.after + 4, `the new snapshot's seq (${seqBefore}..${seqAfter}) is well past the old one's (${snap.before}..${snap.after})`)

    await b.waitForBeat(60_000, 0, (beat) => (beat.seq ?? 0) >= seqAfter + 4)
    const sent = Date.now()
    control.setCommand('hang')
    const cycle = await revertCycle(svc, b, sent, (e) => e.reason === 'heartbeat_timeout')
    const seq = cycle.firstBeat.seq ?? -1
    t.ok(seq >= seqBefore && seq <= seqAfter + 2, `after the revert the seq (${seq}) is the new snapshot's (${seqBefore}..${seqAfter}), not the old ready's (${snap.before}..${snap.after})`)
    t.equal((await virsh(['snapshot-current', '--name', rig.name])).trim(), target, 'libvirt\'s current snapshot is the revision')
  })

  t.notOk(rig.service!.hasExited(), 'the service is still running')
  t.comment(`file total: ${Date.now() - fileStart} ms`)
}
