// Proves the e2e infrastructure, not the service: a real libvirtd + QEMU guest boots, sends
// heartbeats with increasing seq to a plain loopback listener, survives a snapshot revert with its
// sequence back at the snapshot's value, obeys the control commands, and its agent and screen work.
import t, { type Test } from 'tap'
import {
  agentCommand, buildGuest, canRunE2E, createControlServer, createHeartbeatRecorder, defineAndBoot,
  revertToSnapshot, screenshot, setupHost, sleep, takeReadySnapshot, teardown
} from '../../harness/guest.ts'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('a real guest boots, beats, survives a revert and obeys its control commands', guestBoot)
}

async function guestBoot (t: Test): Promise<void> {
  t.teardown(teardown)
  const ms = (from: number, to = performance.now()) => Math.round(to - from)

  let t0 = performance.now()
  t.comment((await setupHost()).trim().replace(/^/gm, '  '))
  t.comment(`setup-host + daemons: ${ms(t0)} ms`)
  t0 = performance.now()
  const image = await buildGuest()
  t.comment(`build-guest: ${ms(t0)} ms (guest ${image.key})`)

  const service = await createHeartbeatRecorder()
  t.teardown(service.close)
  const control = await createControlServer()
  t.teardown(control.close)

  const name = 'kvw-e2e-guest-boot'
  const vm = await defineAndBoot({ name, heartbeatPort: service.port, controlPort: control.port, guestVmName: name })
  t.teardown(async () => {
    // On failure, what the guest said is the first thing to look at.
    if (t.passing()) return
    t.comment(`guest console:\n${await vm.readConsole()}`)
  })
  const bootedAt = vm.startedAt ?? performance.now()

  const first = await service.waitForHeartbeat(90_000)
  const bootToFirstHeartbeat = ms(bootedAt, first.at)
  t.comment(`boot to first heartbeat: ${bootToFirstHeartbeat} ms`)
  t.equal(first.seq, 1, 'the first heartbeat after boot has seq=1')
  t.equal(first.status, 'ok')
  t.equal(first.vm, name, 'the heartbeat names the VM (&vm=)')
  await service.waitForHeartbeat(60_000, 0, (h) => h.seq >= 3)
  const seqs = service.heartbeats.map((h) => h.seq)
  t.ok(seqs.every((s, i) => i === 0 || s === (seqs[i - 1] ?? 0) + 1), `seq goes up by one per beat: ${seqs.join(',')}`)
  t.equal(control.boots.length, 1, 'the guest reported one boot to the control server')

  t.same(await agentCommand(name, '{"execute":"guest-ping"}'), { return: {} }, 'the guest agent answers guest-ping')

  // The snapshot is taken while the heartbeat loop runs: its seq lies between these two.
  const seqBeforeSnapshot = service.heartbeats.at(-1)?.seq ?? 0
  t0 = performance.now()
  await takeReadySnapshot(name)
  t.comment(`snapshot-create (running guest, with memory): ${ms(t0)} ms`)
  const seqAfterSnapshot = (await service.waitForHeartbeat(60_000, performance.now())).seq
  // Let the sequence run well past the snapshot's value, so "back near it" means something.
  await service.waitForHeartbeat(60_000, 0, (h) => h.seq >= seqAfterSnapshot + 4)

  // hang: the heartbeat loop stops (and stays stopped).
  const hangSent = performance.now()
  control.setCommand('hang')
  const hangAck = await control.waitForAck('hang', 60_000, hangSent)
  // A beat already in flight when the loop was stopped may still land: heartbeat.sh's request
  // timeout bounds it (busybox wget under `timeout`), on a busy machine too.
  await sleep(6000)
  const countWhileHung = service.heartbeats.length
  const maxSeqBeforeRevert = Math.max(...service.heartbeats.map((h) => h.seq))
  await sleep(4000)
  t.equal(service.heartbeats.length, countWhileHung, `no heartbeat for 4 s after 'hang' (acknowledged after ${ms(hangSent, hangAck.at)} ms)`)

  // Revert: the guest runs again from the snapshot, with its seq back at the snapshot's value.
  const revertStart = performance.now()
  await revertToSnapshot(name)
  const revertCall = ms(revertStart)
  const afterRevert = await service.waitForHeartbeat(60_000, revertStart)
  t.comment(`snapshot-revert call: ${revertCall} ms; revert to first heartbeat: ${ms(revertStart, afterRevert.at)} ms`)
  t.ok(afterRevert.seq >= seqBeforeSnapshot && afterRevert.seq <= seqAfterSnapshot + 1,
    `seq after revert (${afterRevert.seq}) is back at the snapshot's (${seqBeforeSnapshot}..${seqAfterSnapshot}), below the ${maxSeqBeforeRevert} reached before`)
  const later = await service.waitForHeartbeat(60_000, afterRevert.at, (h) => h.seq === afterRevert.seq + 2)
  t.ok(later, 'heartbeats go on after the revert (the consumed hang command does not come back)')
  t.equal(control.boots.length, 1, 'a revert is not a reboot: no new boot reported')

  // A guest-side revert request, with its reason.
  const revertCmdSent = performance.now()
  control.setCommand('revert:test_reason')
  const request = await service.waitForRevertRequest(60_000, revertCmdSent)
  t.equal(request.reason, 'test_reason', 'the guest asked for a revert with reason=test_reason')
  t.comment(`control command to revert request: ${ms(revertCmdSent, request.at)} ms`)

  // The screen changes every second until freeze-screen stops its ticker.
  const shotA = await screenshot(name)
  await sleep(1500)
  const shotB = await screenshot(name)
  t.ok(shotA.length > 0 && !shotA.equals(shotB), 'the screen changes while the guest runs')
  const freezeSent = performance.now()
  control.setCommand('freeze-screen')
  await control.waitForAck('freeze-screen', 60_000, freezeSent)
  await sleep(500)
  const shotC = await screenshot(name)
  await sleep(2000)
  const shotD = await screenshot(name)
  t.ok(shotC.equals(shotD), 'after freeze-screen the screen stays the same')
  t.ok(service.heartbeats.at(-1)!.at > freezeSent, 'a frozen screen does not stop the heartbeats')
}
