// Proves killLibvirtd()/startLibvirtd() for the service's reconnect tests: a libvirtd crash
// (SIGKILL) leaves the guest running and beating, and a restarted libvirtd takes the domain back
// (state, snapshot revert). Holds the e2e lock exclusively: no other e2e test runs meanwhile.
import t, { type Test } from 'tap'
import {
  canRunE2E, createHeartbeatRecorder, defineAndBoot, domainState, killLibvirtd, revertToSnapshot,
  setupHost, startLibvirtd, takeReadySnapshot, teardown, virsh
} from '../../harness/guest.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('the guest outlives a libvirtd crash and libvirtd takes it back', libvirtdRestart)
}

async function libvirtdRestart (t: Test): Promise<void> {
  t.teardown(teardown)
  await setupHost({ exclusive: true })
  const service = await createHeartbeatRecorder()
  t.teardown(service.close)
  const name = 'kvw-e2e-libvirtd-restart'
  const vm = await defineAndBoot({ name, heartbeatPort: service.port })
  t.teardown(async () => { if (!t.passing()) t.comment(`guest console:\n${await vm.readConsole()}`) })
  await service.waitForHeartbeat(90_000, 0, (h) => h.seq >= 2)
  await takeReadySnapshot(name)
  const seqAfterSnapshot = (await service.waitForHeartbeat(60_000, performance.now())).seq

  await killLibvirtd('SIGKILL')
  await t.rejects(virsh(['version'], 10_000), 'qemu:///system does not answer while libvirtd is down')
  const killedAt = performance.now()
  await service.waitForHeartbeat(60_000, killedAt)
  t.pass('heartbeats go on while libvirtd is down')

  const t0 = performance.now()
  await startLibvirtd()
  t.comment(`libvirtd restart until it answers: ${Math.round(performance.now() - t0)} ms`)
  t.equal(await domainState(name), 'running', 'the restarted libvirtd finds the guest running')

  const revertStart = performance.now()
  await revertToSnapshot(name)
  // The first beat of the reverted guest: its counter went down. A beat of the old guest still
  // in flight when the revert ran arrives after revertStart too, with a higher seq: not it.
  const maxSeq = Math.max(...service.heartbeats.map((h) => h.seq))
  const afterRevert = await service.waitForHeartbeat(60_000, revertStart, (h) => h.seq < maxSeq)
  t.ok(afterRevert.seq <= seqAfterSnapshot + 1,
    `a revert through the new libvirtd works: seq back to ${afterRevert.seq} (snapshot at <= ${seqAfterSnapshot}, reached ${maxSeq})`)
}
