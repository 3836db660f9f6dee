// The reconnect backoff (issue 15): while libvirtd is not there at all (its socket missing), the
// binding retries every reconnectWhileDownMs however long the outage, so it is back within that
// long of libvirtd answering; other failures (libvirt answered and refused) back off, doubling up
// to reconnectMaxMs. On a fake clock; the failed opens are real libvirt calls (no daemon needed).
import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { openHypervisor, reconnectDelay } from '../../src/libvirt/index.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

t.test('reconnectDelay: doubling up to the max; capped while the daemon is absent', async (t) => {
  const opts = { maxMs: 30_000, whileDownMs: 500 }
  let backoff = 500
  const answered: number[] = []
  const absent: number[] = []
  let absentBackoff = 500
  for (let i = 0; i < 8; i++) {
    const a = reconnectDelay(backoff, false, opts)
    answered.push(a.delayMs)
    backoff = a.nextBackoffMs
    const b = reconnectDelay(absentBackoff, true, opts)
    absent.push(b.delayMs)
    absentBackoff = b.nextBackoffMs
  }
  t.same(answered, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
  t.same(absent, [500, 500, 500, 500, 500, 500, 500, 500])
  t.same(reconnectDelay(200, true, opts), { delayMs: 200, nextBackoffMs: 200 }, 'a shorter backoff stays as it is')
  t.same(reconnectDelay(8000, true, opts), { delayMs: 500, nextBackoffMs: 8000 }, 'absent: the backoff does not grow')
  // The daemon is back but fails at first (still starting): retried after the backoff it had, not after maxMs.
  t.same(reconnectDelay(absentBackoff, false, opts), { delayMs: 500, nextBackoffMs: 1000 })
})

/** Opens URI on a fake clock and records the delays of the reconnect attempts it schedules, for ATTEMPTS attempts. */
async function delaysOf (t: Test, uri: string, attempts: number): Promise<number[]> {
  const clock = new FakeClock(0)
  const delays: number[] = []
  const log = { debug (obj: object, msg: string) { if (msg === 'reconnecting to libvirt') delays.push((obj as { delayMs: number }).delayMs) }, info () {}, warn () {} }
  const h = openHypervisor(uri, { keepaliveInterval: 0, reconnectInitialMs: 500, reconnectMaxMs: 30_000, timers: clock, log })
  t.teardown(() => h.close())
  await h.connect().catch(() => {})
  while (delays.length < attempts) {
    const seen = delays.length
    t.equal(clock.pending, 1, 'one reconnect timer waits')
    clock.advance(delays.at(-1)!)
    // The attempt runs on a libuv worker: wait (real time) until it has failed and scheduled the next.
    for (let i = 0; i < 500 && delays.length === seen; i++) await sleep(10)
    if (delays.length === seen) throw new Error('no next reconnect attempt was scheduled')
  }
  t.equal(h.connected, false)
  return delays
}

t.test('libvirtd socket missing: an attempt every 500 ms, however long the outage', async (t) => {
  const delays = await delaysOf(t, 'qemu+unix:///system?socket=/nonexistent/kvw-test/libvirt-sock', 9)
  t.same(delays, [500, 500, 500, 500, 500, 500, 500, 500, 500])
})

t.test('libvirt answered and refused (a broken test-driver file): the backoff doubles', async (t) => {
  const delays = await delaysOf(t, 'test:///nonexistent/kvw-test/node.xml', 8)
  t.same(delays, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
})
