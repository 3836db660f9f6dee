// Recovery time on a real QEMU guest: from the moment a revert starts to the first heartbeat
// after it, for the service, next to the floor measured on the same guest and snapshot in the
// same run:
//   service: POST /api/v1/revert (a technician's revert: same code path as an automatic one)
//            audit revert_started ts -> first heartbeat at the proxy in front of the service
//            (also the service's own last_revert.recovery_ms, and from the API call);
//   virsh:   `virsh snapshot-revert DOM ready` started -> first heartbeat at the proxy;
//   binding: our Hypervisor.revertToSnapshot() called in this process -> first heartbeat.
// The three alternate, run after run. During the virsh/binding runs the service is in
// maintenance, so it does not react to a revert it did not make.
// Prints numbers, no pass/fail.   node --import tsx bench/recovery.ts [--runs 10] [--dist]
import { virsh } from '../harness/guest.ts'
import { firstBeatAfterRevert, revertCycle, ServiceRig, waitForStatus } from '../harness/service.ts'
import { openHypervisor } from '../src/libvirt/index.ts'
import { benchArgs, describe, line, loadNote, reportFailure, serviceEntry, stats } from './lib.ts'

const args = benchArgs(10)
const rig = new ServiceRig('kvw-bench-recovery', { viaProxy: true, entry: serviceEntry(args.dist) })
const h = openHypervisor('qemu:///system', { reconnect: false })
let failed = false
try {
  console.log(`recovery time: real service (${args.dist ? 'dist/' : 'src/ via tsx'}) on a real TCG guest, ${args.runs} runs each, alternating`)
  console.log(`before: ${loadNote()}`)
  await rig.start()
  await rig.takeSnapshot()
  await h.connect()
  const svc = rig.service!
  const beats = rig.beats!

  const service = { startToBeat: [] as number[], apiToBeat: [] as number[], reported: [] as number[], call: [] as number[], startToCall: [] as number[] }
  const floorVirsh = { startToBeat: [] as number[], call: [] as number[] }
  const floorBinding = { startToBeat: [] as number[], call: [] as number[] }
  /** Two beats in a row after `since`: the guest runs steadily again. */
  const steady = async (since: number) => {
    const first = await beats.waitForBeat(30_000, since)
    await beats.waitForBeat(30_000, first.at + 1)
  }
  const maintenance = async (on: boolean) => {
    const r = await svc.request('POST', on ? '/api/v1/revert/disable?indefinite=true' : '/api/v1/revert/enable')
    if (r.status !== 200) throw new Error(`maintenance ${on ? 'on' : 'off'}: ${r.status} ${JSON.stringify(r.body)}`)
  }

  for (let i = 0; i < args.runs; i++) {
    // The service.
    await maintenance(false)
    await steady(Date.now())
    const apiAt = Date.now()
    const r = await svc.request('POST', '/api/v1/revert?reason=bench')
    if (r.status !== 202) throw new Error(`POST /api/v1/revert: ${r.status} ${JSON.stringify(r.body)}`)
    const cycle = await revertCycle(svc, beats, apiAt, (e) => e.reason === 'bench')
    const startedAt = Date.parse(cycle.started.ts)
    service.startToBeat.push(cycle.firstBeat.at - startedAt)
    service.apiToBeat.push(cycle.firstBeat.at - apiAt)
    service.reported.push(cycle.status.watchdog.last_revert.recovery_ms)
    service.call.push(Number(cycle.finished.durationMs))
    service.startToCall.push(Number(cycle.finished.totalMs) - Number(cycle.finished.durationMs))
    await steady(cycle.firstBeat.at + 1)

    // The floor: virsh.
    await maintenance(true)
    await waitForStatus(svc, 'maintenance', (s) => s.watchdog.state === 'maintenance', 5000)
    await steady(Date.now())
    const virshAt = Date.now()
    await virsh(['snapshot-revert', rig.name, 'ready'])
    floorVirsh.call.push(Date.now() - virshAt)
    floorVirsh.startToBeat.push((await firstBeatAfterRevert(beats, virshAt, 30_000)).at - virshAt)
    await steady(Date.now())

    // The floor: our binding, in this process.
    const bindingAt = Date.now()
    await h.revertToSnapshot(rig.name, 'ready')
    floorBinding.call.push(Date.now() - bindingAt)
    floorBinding.startToBeat.push((await firstBeatAfterRevert(beats, bindingAt, 30_000)).at - bindingAt)
    await steady(Date.now())
    process.stderr.write(`  run ${i + 1}: service ${service.startToBeat.at(-1)} ms, virsh ${floorVirsh.startToBeat.at(-1)} ms, binding ${floorBinding.startToBeat.at(-1)} ms\n`)
  }
  await maintenance(false)

  const s = stats(service.startToBeat)
  const v = stats(floorVirsh.startToBeat)
  const b = stats(floorBinding.startToBeat)
  console.log('revert start -> first heartbeat (at the proxy in front of the service):')
  console.log(line('service (audit revert_started -> beat)', describe(s)))
  console.log(line('service (own last_revert.recovery_ms)', describe(stats(service.reported))))
  console.log(line('service (POST /api/v1/revert -> beat)', describe(stats(service.apiToBeat))))
  console.log(line('floor: virsh snapshot-revert -> beat', describe(v)))
  console.log(line('floor: binding revertToSnapshot -> beat', describe(b)))
  console.log('where the time goes:')
  console.log(line('service: revert started -> libvirt call', describe(stats(service.startToCall))))
  console.log(line('service: libvirt revert call', describe(stats(service.call))))
  console.log(line('virsh snapshot-revert process', describe(stats(floorVirsh.call))))
  console.log(line('binding revertToSnapshot call', describe(stats(floorBinding.call))))
  console.log(`service / virsh floor, medians: ${(s.median / v.median).toFixed(3)} (target <= 1.1); p95: ${(s.p95 / v.p95).toFixed(3)}`)
  console.log(`service / binding floor, medians: ${(s.median / b.median).toFixed(3)}`)
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  reportFailure(err, rig.service)
} finally {
  await h.close().catch(() => {})
  await rig.close(false, () => {})
}
process.exit(failed ? 1 : 0)
