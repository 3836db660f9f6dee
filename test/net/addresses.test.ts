// networkList: the matcher behind security.guest_networks and isLoopback. Asked several times per
// heartbeat, so it remembers its answers (bench/README.md, tail latency); these tests hold it to
// the same answers as asking node's BlockList every time, within a bounded memory.
import t from 'tap'
import type { Test } from 'tap'
import { BlockList } from 'node:net'
import { NETWORK_ANSWERS_KEPT_MAX, networkList } from '../../src/net/addresses.ts'

/** Counts BlockList.check calls while FN runs (every list shares the prototype's method). */
function countingChecks<T> (t: Test, fn: () => T): { result: T, checks: number } {
  const original = BlockList.prototype.check
  let checks = 0
  BlockList.prototype.check = function (this: BlockList, ...args: unknown[]) {
    checks++
    return (original as (...a: unknown[]) => boolean).apply(this, args)
  } as typeof original
  t.teardown(() => { BlockList.prototype.check = original })
  try {
    return { result: fn(), checks }
  } finally {
    BlockList.prototype.check = original
  }
}

t.test('an address asked again is answered from memory, the same answer', async (t) => {
  const has = networkList(['127.0.0.0/8', '::1', '192.168.122.0/24'])
  const { result, checks } = countingChecks(t, () => [1, 2, 3].map(() => [has('127.0.0.1'), has('::ffff:192.168.122.9'), has('10.0.0.1'), has('::1')]))
  t.same(result, [[true, true, false, true], [true, true, false, true], [true, true, false, true]])
  t.equal(checks, 4, 'the BlockList was asked once per distinct address, not per call')
})

t.test('garbage and empty addresses are remembered as not in the list', async (t) => {
  const has = networkList(['127.0.0.0/8'])
  const { result, checks } = countingChecks(t, () => [has(''), has('not-an-address'), has(''), has('not-an-address')])
  t.same(result, [false, false, false, false])
  t.equal(checks, 1, 'only "not-an-address" reached the BlockList (it throws; the empty one is refused before)')
})

t.test('past its bound the memory starts over and the answers stay right', async (t) => {
  const has = networkList(['10.0.0.0/16'])
  // Twice the bound of distinct addresses, half of them in the list, then all of them again.
  const addresses = Array.from({ length: 2 * NETWORK_ANSWERS_KEPT_MAX }, (_, i) => `10.${i % 2 === 0 ? 0 : 1}.${Math.floor(i / 256) % 256}.${i % 256}`)
  const expected = addresses.map((a) => a.startsWith('10.0.'))
  const first = countingChecks(t, () => addresses.map((a) => has(a)))
  t.same(first.result, expected)
  t.equal(first.checks, addresses.length, 'each new address asked once')
  const again = countingChecks(t, () => addresses.map((a) => has(a)))
  t.same(again.result, expected, 'the same answers after the memory was cleared')
  t.equal(again.checks, addresses.length, 'the memory was cleared when full (no unbounded growth): each asked once again')
  // The last addresses asked are remembered: the memory holds at most the bound.
  const last = countingChecks(t, () => addresses.slice(-10).map((a) => has(a)))
  t.same(last.result, expected.slice(-10))
  t.equal(last.checks, 0, 'the most recent addresses are answered from memory')
})
