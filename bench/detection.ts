// Detection latency of the real service on a real QEMU guest (needs what test/e2e needs: root,
// libvirtd + QEMU; the e2e harness sets them up):
//   1. hang: heartbeat deadline -> revert started (the machine's step; audit revert_started
//      `lateByMs`) and -> libvirt revert call (audit revert_finished `deadlineLagMs`, which also
//      covers resolving the snapshot's active version).
//   2. crash: our `virsh destroy` call -> revert started (audit revert_started ts).
// Prints numbers, no pass/fail.
//   node --import tsx bench/detection.ts [--runs 10] [--dist]
import { virsh } from '../harness/guest.ts'
import { revertCycle, ServiceRig } from '../harness/service.ts'
import { benchArgs, describe, line, loadNote, reportFailure, serviceEntry, stats } from './lib.ts'

const args = benchArgs(10)
const rig = new ServiceRig('kvw-bench-detection', { viaProxy: true, entry: serviceEntry(args.dist), extraConfig: { heartbeat_timeout: 4 } })
let failed = false
try {
  console.log(`detection latency: real service (${args.dist ? 'dist/' : 'src/ via tsx'}) on a real TCG guest, heartbeat_timeout 4 s, ${args.runs} runs each`)
  console.log(`before: ${loadNote()}`)
  await rig.start()
  await rig.takeSnapshot()
  const svc = rig.service!
  const beats = rig.beats!
  const control = rig.control!

  const lateBy: number[] = []
  const deadlineLag: number[] = []
  const lastBeatToStart: number[] = []
  for (let i = 0; i < args.runs; i++) {
    await beats.waitForBeat(15_000, Date.now())
    const sent = Date.now()
    control.setCommand('hang')
    const cycle = await revertCycle(svc, beats, sent, (e) => e.reason === 'heartbeat_timeout')
    const startedAt = Date.parse(cycle.started.ts)
    lateBy.push(Number(cycle.started.lateByMs))
    deadlineLag.push(Number(cycle.finished.deadlineLagMs))
    const lastBeat = beats.beats.filter((b) => b.at < startedAt).at(-1)!
    lastBeatToStart.push(startedAt - lastBeat.at)
    process.stderr.write(`  hang run ${i + 1}: lateByMs ${String(cycle.started.lateByMs)}, deadlineLagMs ${String(cycle.finished.deadlineLagMs)}\n`)
  }

  const destroyToStart: number[] = []
  const destroyReturnedToStart: number[] = []
  for (let i = 0; i < args.runs; i++) {
    await beats.waitForBeat(15_000, Date.now())
    const destroyAt = Date.now()
    await virsh(['destroy', rig.name])
    const destroyReturned = Date.now()
    const cycle = await revertCycle(svc, beats, destroyAt, (e) => e.reason === 'vm_not_running')
    destroyToStart.push(Date.parse(cycle.started.ts) - destroyAt)
    destroyReturnedToStart.push(Date.parse(cycle.started.ts) - destroyReturned)
    process.stderr.write(`  destroy run ${i + 1}: ${Date.parse(cycle.started.ts) - destroyAt} ms\n`)
  }

  console.log('hang (no heartbeat for heartbeat_timeout):')
  console.log(line('deadline -> revert started (lateByMs)', describe(stats(lateBy))))
  console.log(line('deadline -> libvirt revert call (deadlineLagMs)', describe(stats(deadlineLag))))
  console.log(line('last heartbeat seen -> revert started', describe(stats(lastBeatToStart))))
  console.log('crash (virsh destroy):')
  console.log(line('destroy call -> revert started', describe(stats(destroyToStart))))
  console.log(line('destroy call returned -> revert started', describe(stats(destroyReturnedToStart))))
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  reportFailure(err, rig.service)
} finally {
  await rig.close(false, () => {})
}
process.exit(failed ? 1 : 0)
