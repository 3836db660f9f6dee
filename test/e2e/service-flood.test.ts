// Issue 16 on the real guest: a load test from the host against /api/v1/heartbeat (autocannon,
// 20 s, its default 10 connections) with the default guest rate limit (600 a minute per client).
// Under QEMU user networking the guest's own heartbeats come from 127.0.0.1 like the flood (here
// through the recording proxy, also on 127.0.0.1), so they share the flood's budget: they may be
// answered 429, but each is still counted, and the healthy guest is never reverted.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { canRunE2E, sleep } from '../../harness/guest.ts'
import { REPO_ROOT, ServiceRig } from '../../harness/service.ts'

const FLOOD_S = 20
// The default heartbeat_timeout: the flood shares two cores with the TCG guest, whose beats may
// come late for CPU; what is tested is that the rate limit never makes them not count.
const HEARTBEAT_TIMEOUT_S = 15

interface AutocannonResult { requests: { total: number, average: number }, '2xx': number, non2xx: number, errors: number, statusCodeStats?: Record<string, { count: number }> }

/** autocannon as its own process (its CLI with --json), so it does not share this event loop. */
function autocannon (url: string, seconds: number): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(REPO_ROOT, 'node_modules', 'autocannon', 'autocannon.js'), '-d', String(seconds), '--json', url],
      { maxBuffer: 64 * 1024 * 1024, timeout: (seconds + 60) * 1000 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`autocannon failed: ${error.message}\n${stderr}`))
        else resolve(JSON.parse(stdout) as AutocannonResult)
      })
  })
}

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('a heartbeat flood from the host with the default limits never reverts the healthy guest', serviceFlood)
}

async function serviceFlood (t: Test): Promise<void> {
  const rig = new ServiceRig('kvw-e2e-service-flood', {
    viaProxy: true,
    // Default guest and admin limits; reads stay out of the way of the harness's status calls.
    extraConfig: { heartbeat_timeout: HEARTBEAT_TIMEOUT_S, security: { rate_limit_read: 1_000_000 } }
  })
  t.teardown(() => rig.close(!t.passing(), (text) => t.comment(text)))
  await rig.start()
  const svc = rig.service!
  const beats = rig.beats!
  await rig.takeSnapshot()
  const before = await svc.get('/api/v1/heartbeat/status')
  t.equal(before.state, 'healthy', 'healthy before the flood')

  const floodStart = Date.now()
  const result = await autocannon(`http://127.0.0.1:${svc.port}/api/v1/heartbeat?status=flood`, FLOOD_S)
  const floodEnd = Date.now()
  const codes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s.count]))
  t.comment(`autocannon ${FLOOD_S} s: ${result.requests.total} requests (${Math.round(result.requests.average)}/s), status codes ${JSON.stringify(codes)}, errors ${result.errors}`)
  t.ok(result.non2xx > 0 && (codes['429'] ?? 0) === result.non2xx, 'the flood was answered 429 over the limit (and nothing else went wrong)')
  t.ok(result['2xx'] <= 600 * Math.ceil(FLOOD_S / 60 + 1), `at most 600 a minute answered 200 (${result['2xx']})`)

  // Past heartbeat_timeout after the flood: a revert caused by it would have started by now.
  await sleep(HEARTBEAT_TIMEOUT_S * 1000 + 3000)
  const reverts = (await svc.events('revert_started')).filter((e) => Date.parse(e.ts) >= floodStart - 1000)
  t.same(reverts, [], 'no revert during or after the flood')
  const after = await svc.get('/api/v1/heartbeat/status')
  t.equal(after.state, 'healthy', 'healthy after the flood')
  t.ok(after.heartbeats_total - before.heartbeats_total >= result.requests.total,
    `every heartbeat that reached the service was counted (${after.heartbeats_total - before.heartbeats_total} counted, ${result.requests.total} sent by the flood alone)`)
  // The guest beat on throughout (its seq never went back: no revert), seen at the proxy.
  const during = beats.beats.filter((b) => b.at >= floodStart && b.at <= floodEnd)
  t.ok(during.length >= FLOOD_S / 2, `the guest's heartbeats kept arriving during the flood (${during.length} in ${FLOOD_S} s)`)
  const seqs = beats.beats.filter((b) => b.at >= floodStart).map((b) => b.seq ?? -1)
  t.ok(seqs.every((s, i) => i === 0 || s >= seqs[i - 1]!), 'the guest\'s seq only went up')
  t.notOk(svc.hasExited(), 'the service is still running')
}
