// Client addresses, CIDR networks and listen hosts: plain functions the security plugin, the
// routes and the doctor share. Imports nothing of the service.
import { BlockList, isIPv6 } from 'node:net'

/** "::ffff:10.0.2.15" and "10.0.2.15" are the same client. */
export function normalizeAddress (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/**
 * Answers a network list remembers (per list). Asking BlockList builds a SocketAddress per call (a
 * C++ object the GC must finalize, plus an IPv6 regex): ~10 µs of every heartbeat, which asks
 * about its address three times. Bounded: a client cycling through addresses (an IPv6 /64)
 * costs a cleared map now and then, never memory.
 */
export const NETWORK_ANSWERS_KEPT_MAX = 1024

/** A set of addresses and CIDR networks (validated by the config schema). */
export function networkList (entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList()
  for (const entry of entries) {
    const [address, prefix] = entry.split('/') as [string, string | undefined]
    const family = isIPv6(address) ? 'ipv6' : 'ipv4'
    if (prefix === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(prefix), family)
  }
  const answers = new Map<string, boolean>()
  return (address) => {
    const known = answers.get(address)
    if (known !== undefined) return known
    const a = normalizeAddress(address)
    let answer = false
    if (a !== '') {
      try {
        answer = list.check(a, isIPv6(a) ? 'ipv6' : 'ipv4')
      } catch {
        answer = false // not an IP address at all
      }
    }
    if (answers.size >= NETWORK_ANSWERS_KEPT_MAX) answers.clear()
    answers.set(address, answer)
    return answer
  }
}

export const isLoopback = networkList(['127.0.0.0/8', '::1'])

/** A dotted IPv4 address as a number; null when it is not one. */
export function ipv4ToInt (a: string): number | null {
  const parts = a.split('.')
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return null
  return parts.reduce((n, p) => n * 256 + Number(p), 0)
}

/** Whether any entry (address or CIDR) overlaps the IPv4 subnet address/prefix; null when address is not IPv4. */
export function overlapsSubnet (entries: readonly string[], address: string, prefix: number): boolean | null {
  const base = ipv4ToInt(address)
  if (base === null) return null
  const mask = (bits: number) => bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
  return entries.some((entry) => {
    const [a, p] = entry.split('/') as [string, string | undefined]
    const n = ipv4ToInt(a)
    if (n === null) return false
    const bits = Math.min(p === undefined ? 32 : Number(p), prefix)
    return ((n & mask(bits)) >>> 0) === ((base & mask(bits)) >>> 0)
  })
}

export type HostKind = 'wildcard' | 'loopback' | 'specific'

/** What a listen address (api_host) covers: every interface, loopback only, or one address. */
export function listenHostKind (host: string): HostKind {
  if (host === '0.0.0.0' || host === '::' || host === '') return 'wildcard'
  if (host === 'localhost' || host === '::1' || /^127\./.test(host)) return 'loopback'
  return 'specific'
}
