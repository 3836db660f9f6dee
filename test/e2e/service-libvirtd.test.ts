// The real service while libvirtd crashes (SIGKILL) and comes back: it notices, keeps watching
// heartbeats without reverting anything meanwhile, reconnects on its own, and afterwards a hung
// guest is still reverted. Holds the e2e lock exclusively (no other e2e test runs meanwhile).
import t, { type Test } from 'tap'
import { canRunE2E, killLibvirtd, sleep, startLibvirtd, virsh } from '../../harness/guest.ts'
import { E2E_HEARTBEAT_TIMEOUT_S, revertCycle, ServiceRig, waitForStatus } from '../../harness/service.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('the service outlives a libvirtd crash, reconnects, and still reverts', serviceLibvirtd)
}

async function serviceLibvirtd (t: Test): Promise<void> {
  const fileStart = Date.now()
  const rig = new ServiceRig('kvw-e2e-service-libvirtd')
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start({ exclusive: true })
  const svc = rig.service!
  const b = rig.beats!
  const snap = await rig.takeSnapshot()
  await b.waitForBeat(60_000, Date.now())

  const killedAt = Date.now()
  await killLibvirtd('SIGKILL')
  await t.rejects(virsh(['version'], 10_000), 'qemu:///system does not answer while libvirtd is down')
  const lost = await svc.waitForLog('libvirt connection lost', (l) => l.msg === 'libvirt connection lost', 60_000, killedAt)
  t.comment(`libvirtd killed to "libvirt connection lost" logged: ${lost.receivedAt - killedAt} ms (${String(lost.reason)})`)
  const down = await waitForStatus(svc, 'libvirt disconnected', (s) => s.libvirt.connected === false, 60_000)
  t.equal(down.vm_state, 'unknown', 'the status says the VM state is unknown while libvirt is away')

  // Longer than heartbeat_timeout with libvirt down: heartbeats keep the watchdog healthy.
  await sleep(E2E_HEARTBEAT_TIMEOUT_S * 1000 + 2000)
  const seenWhileDown = b.beats.filter((beat) => beat.at > killedAt)
  t.ok(seenWhileDown.length >= 2, `heartbeats reach the service while libvirtd is down (${seenWhileDown.length} in ${E2E_HEARTBEAT_TIMEOUT_S + 2} s)`)
  t.notOk(svc.hasExited(), 'the service did not crash')
  t.equal((await svc.get('/api/v1/status')).watchdog.state, 'healthy', 'the watchdog stays healthy')

  const restartAt = Date.now()
  await startLibvirtd()
  const up = await waitForStatus(svc, 'libvirt connected again', (s) => s.libvirt.connected === true && s.vm_state === 'running', 60_000)
  t.comment(`libvirtd started to the service connected again: ${Date.now() - restartAt} ms`)
  t.equal(up.snapshot_target, 'ready', 'after the reconnect the service sees the snapshot again')
  const logged = await svc.waitForLog('connected to libvirt', (l) => l.msg === 'connected to libvirt', 60_000, restartAt)
  t.ok(logged, 'the service logged "connected to libvirt"')
  await svc.waitForLog('the watchdog rereads the VM', (l) => l.msg === 'libvirt connection back; reading the VM state', 10_000, restartAt)
  const reverts = (await svc.events('revert_started')).filter((e) => Date.parse(e.ts) >= killedAt)
  t.same(reverts, [], 'no revert while libvirtd was down or when it came back')

  // Again: the second connection's drop must be noticed too (libvirtd restarts on every package
  // upgrade over the years; a close callback bound to the first connection would miss it).
  const killedAgainAt = Date.now()
  await killLibvirtd('SIGKILL')
  const lostAgain = await svc.waitForLog('libvirt connection lost (second time)', (l) => l.msg === 'libvirt connection lost', 60_000, killedAgainAt)
  t.comment(`second libvirtd kill to "libvirt connection lost": ${lostAgain.receivedAt - killedAgainAt} ms`)
  await waitForStatus(svc, 'libvirt disconnected again', (s) => s.libvirt.connected === false, 60_000)
  const restartAgainAt = Date.now()
  await startLibvirtd()
  await waitForStatus(svc, 'libvirt connected again (second time)', (s) => s.libvirt.connected === true && s.vm_state === 'running', 60_000)
  t.comment(`second restart to connected again: ${Date.now() - restartAgainAt} ms`)
  t.same((await svc.events('revert_started')).filter((e) => Date.parse(e.ts) >= killedAt), [], 'no revert across both libvirtd crashes')

  await t.test('after the reconnect a hung guest is still reverted', async (t) => {
    await b.waitForBeat(60_000, Date.now())
    const sent = Date.now()
    rig.control!.setCommand('hang')
    const cycle = await revertCycle(svc, b, sent, (e) => e.reason === 'heartbeat_timeout')
    t.ok(rig.isSnapshotSeq(cycle.firstBeat.seq), `first seq after the revert (${cycle.firstBeat.seq}) is the snapshot's (${snap.before}..${snap.after})`)
    t.equal(cycle.finished.attempts, 1, 'the revert worked at the first attempt on the new connection')
  })

  t.notOk(svc.hasExited(), 'the service is still running')
  t.comment(`file total: ${Date.now() - fileStart} ms`)
}
