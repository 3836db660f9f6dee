// Records the heartbeat arrival times of the real e2e guest (needs what test/e2e needs: root,
// libvirtd + QEMU), for bench/detector.ts to replay: the guest (guest-scripts/linux/heartbeat.sh,
// one beat a second) sends its heartbeats to the e2e harness's plain recorder on loopback, which
// notes each arrival (performance.now()) — no service in between, so nothing reverts the guest
// and the trace is the guest's and the host's own rhythm. Writes bench/traces/e2e-guest.json.
//   flock /tmp/kvw-e2e.lock node --import tsx bench/record-arrivals.ts [--minutes 10] [--out FILE]
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createHeartbeatRecorder, defineAndBoot, removeDomain, setupHost, sleep, teardown } from '../harness/guest.ts'
import { REPO_ROOT } from '../harness/service.ts'
import { loadNote } from './lib.ts'

const { values } = parseArgs({ options: { minutes: { type: 'string' }, out: { type: 'string' } } })
const minutes = Number(values.minutes ?? 10)
if (!(minutes > 0)) throw new Error(`--minutes must be a number above 0, got ${String(values.minutes)}`)
const out = values.out ?? join(REPO_ROOT, 'bench', 'traces', 'e2e-guest.json')
const NAME = 'kvw-bench-arrivals'

await setupHost()
const recorder = await createHeartbeatRecorder()
try {
  const loadBefore = loadNote()
  console.log(`recording ${minutes} min of heartbeat arrivals from the e2e guest; before: ${loadBefore}`)
  await defineAndBoot({ name: NAME, heartbeatPort: recorder.port })
  await recorder.waitForHeartbeat(120_000, 0, (h) => h.seq >= 3) // booted and beating
  const from = recorder.heartbeats.length
  await sleep(minutes * 60_000)
  const arrivals = recorder.heartbeats.slice(from).map((h) => h.at)
  const gapsMs = arrivals.slice(1).map((at, i) => Math.round(at - arrivals[i]!))
  const sorted = [...gapsMs].sort((a, b) => a - b)
  const loadAfter = loadNote()
  await writeFile(out, JSON.stringify({
    what: 'heartbeat inter-arrival times (ms) of the e2e guest (guest-scripts/linux/heartbeat.sh every 1 s, QEMU TCG), as received on loopback',
    recordedAt: new Date().toISOString(),
    minutes,
    load: { before: loadBefore, after: loadAfter },
    gapsMs
  }) + '\n')
  console.log(`${gapsMs.length} gaps: min ${sorted[0]} ms, median ${sorted[Math.floor(sorted.length / 2)]} ms, p99 ${sorted[Math.ceil(sorted.length * 0.99) - 1]} ms, max ${sorted.at(-1)} ms; after: ${loadAfter}`)
  console.log(`written to ${out}`)
} finally {
  await removeDomain(NAME).catch((err: unknown) => console.error(err))
  await recorder.close()
  await teardown()
}
