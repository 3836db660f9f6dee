// guest_network:VM (can the guest reach api_host:api_port, and will its heartbeats be let in),
// api_port (free, ours, or someone else's) and firewall (read-only look at nft/iptables).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ipv4ToInt, listenHostKind, networkList, overlapsSubnet } from '../../net/addresses.ts'
import { parseDomainXml, parseNetworkXml, type InterfaceInfo } from '../domain-xml.ts'
import type { Check, DoctorContext } from '../types.ts'
import { domainXml, errorText, libvirtProblem, memo, noVm, notChecked, vmOf, type Finding } from './common.ts'

interface LinkFacts { exists: boolean, addresses: string[] }

/** `ip -j addr show dev NAME`, read-only; null when `ip` cannot tell. */
async function linkFacts (ctx: DoctorContext, device: string): Promise<LinkFacts | null> {
  return memo(ctx, `link:${device}`, async () => {
    const r = await ctx.host.run('ip', ['-j', 'addr', 'show', 'dev', device], 3000)
    if (r.error !== undefined) return null
    if (r.code !== 0) return /does not exist|Cannot find device/i.test(r.stderr) ? { exists: false, addresses: [] } : null
    try {
      const links = JSON.parse(r.stdout) as Array<{ addr_info?: Array<{ local?: string }> }>
      if (links.length === 0) return { exists: false, addresses: [] }
      return { exists: true, addresses: links.flatMap((l) => (l.addr_info ?? []).flatMap((a) => a.local ? [a.local] : [])) }
    } catch {
      return null
    }
  })
}

interface InterfaceVerdict { level: 'ok' | 'warn' | 'fail', text: string, fix?: string }

async function judgeInterface (ctx: DoctorContext, iface: InterfaceInfo): Promise<InterfaceVerdict> {
  const { api_host: apiHost, api_port: port, security } = ctx.loaded!.config
  const kind = listenHostKind(apiHost)
  const allowed = networkList(security.guest_networks)
  const listenFix = (address: string) => `set api_host: 0.0.0.0 (or ${address}) in the config and restart the service`
  if (iface.type === 'user') {
    // QEMU user networking: the guest's 10.0.2.2 is the host's loopback, and the guest's
    // requests arrive from 127.0.0.1.
    const text = 'user networking: the guest reaches the host at 10.0.2.2 (= host 127.0.0.1)'
    if (kind === 'specific') return { level: 'fail', text: `${text}, but api_host ${apiHost} does not listen on loopback`, fix: 'set api_host: 0.0.0.0 or 127.0.0.1' }
    if (!allowed('127.0.0.1')) {
      // Loopback that is not a guest network is the host (a technician): see src/plugins/security.ts.
      const fix = "add 127.0.0.0/8 and '::1' to security.guest_networks"
      if (security.admin_token !== undefined) return { level: 'fail', text: `${text}; its requests come from 127.0.0.1, which is not in security.guest_networks: they are taken as the host's, and with admin_token set its revert requests are refused (401)`, fix }
      return { level: 'warn', text: `${text}; its requests come from 127.0.0.1, which is not in security.guest_networks: they are taken as the host's (a technician's), so its revert requests are not held to the guest rules (guest_revert_min_interval, max_reverts, maintenance)`, fix }
    }
    return { level: 'ok', text: `${text}: guest scripts use http://10.0.2.2:${port}` }
  }
  if (iface.type === 'network' && 'network' in iface) {
    const file = join(ctx.host.paths.libvirtNetworks, `${iface.network}.xml`)
    let xml: string
    try {
      xml = await readFile(file, 'utf8')
    } catch (err) {
      return { level: 'warn', text: `network "${iface.network}": cannot read its definition ${file} (${(err as NodeJS.ErrnoException).code ?? errorText(err)})`, fix: `virsh net-dumpxml ${iface.network} shows it; the host address there must be reachable on api_host` }
    }
    const net = parseNetworkXml(xml)
    const v4 = net.addresses.filter((a) => ipv4ToInt(a.address) !== null)
    if (v4.length === 0) {
      return { level: 'warn', text: `network "${iface.network}" (${net.forward ?? 'isolated'}${net.bridge ? `, bridge ${net.bridge}` : ''}) gives the host no IPv4 address`, fix: `guest scripts must reach this host some other way; check with virsh net-dumpxml ${iface.network}` }
    }
    const hostAddress = v4[0]!.address
    const text = `network "${iface.network}": the guest reaches the host at ${hostAddress}`
    if (kind === 'loopback') return { level: 'fail', text: `${text}, but api_host ${apiHost} listens on loopback only`, fix: listenFix(hostAddress) }
    if (kind === 'specific' && !v4.some((a) => a.address === apiHost)) return { level: 'fail', text: `${text}, but api_host is ${apiHost}`, fix: listenFix(hostAddress) }
    const overlap = overlapsSubnet(security.guest_networks, hostAddress, v4[0]!.prefix)
    if (overlap === false) return { level: 'fail', text: `${text}; the guest's subnet ${hostAddress}/${v4[0]!.prefix} is not in security.guest_networks, so its heartbeats are refused`, fix: `add ${hostAddress}/${v4[0]!.prefix} (the network) to security.guest_networks` }
    if (net.bridge) {
      const link = await linkFacts(ctx, net.bridge)
      if (link !== null && !link.exists) {
        return { level: 'warn', text: `${text}, but its bridge ${net.bridge} is absent: the network is not active`, fix: `virsh net-start ${iface.network} && virsh net-autostart ${iface.network}` }
      }
    }
    return { level: 'ok', text: `${text}: guest scripts use http://${hostAddress}:${port}` }
  }
  if (iface.type === 'bridge' && 'bridge' in iface) {
    const link = await linkFacts(ctx, iface.bridge)
    const text = `bridge ${iface.bridge}`
    if (link !== null && !link.exists) return { level: 'fail', text: `${text} does not exist on this host`, fix: 'create the bridge or fix <source bridge=…/> (virsh edit)' }
    const addresses = link?.addresses.filter((a) => ipv4ToInt(a) !== null) ?? []
    if (kind === 'loopback') return { level: 'fail', text: `${text}: the guest reaches the host at ${addresses[0] ?? 'the bridge\'s address'}, but api_host ${apiHost} listens on loopback only`, fix: listenFix(addresses[0] ?? 'the bridge address') }
    if (link === null) return { level: 'warn', text: `${text}: cannot read its addresses (ip -j addr show dev ${iface.bridge})` }
    if (addresses.length === 0) return { level: 'warn', text: `${text} has no IPv4 address on this host: the guest reaches this host only through another address of it`, fix: 'give the bridge an address, or point the guest scripts at an address of this host on that LAN' }
    if (kind === 'specific' && !addresses.includes(apiHost)) return { level: 'warn', text: `${text}: the host has ${addresses.join(', ')} there, api_host is ${apiHost}`, fix: listenFix(addresses[0]!) }
    return { level: 'ok', text: `${text}: the guest reaches the host at ${addresses.join(' or ')} (its source address must be in security.guest_networks)` }
  }
  if (iface.type === 'direct') {
    return { level: 'warn', text: 'direct (macvtap) interface: the guest cannot reach this host through it (macvtap does not pass guest-to-host traffic)', fix: 'add a second interface on a libvirt network or user networking for the heartbeat' }
  }
  return { level: 'warn', text: `interface of type ${iface.type}: cannot tell how the guest reaches the host` }
}

export function guestNetworkCheck (vm: string): Check {
  return {
    id: `guest_network:${vm}`,
    async run (ctx): Promise<Finding> {
      if (vmOf(ctx, vm) === null) return noVm(ctx, vm)
      if (await libvirtProblem(ctx) !== null) return notChecked('libvirt is not reachable (see libvirt)')
      if (!await memo(ctx, `exists:${vm}`, () => ctx.hypervisor!.domainExists(vm))) return notChecked(`domain "${vm}" does not exist (see domain:${vm})`)
      const facts = parseDomainXml(await domainXml(ctx, vm))
      const { api_host: apiHost, api_port: port } = ctx.loaded!.config
      if (facts.interfaces.length === 0) {
        return { level: 'fail', message: `domain "${vm}" has no network interface: its guest cannot send heartbeats`, fix: `virsh edit ${vm}: add <interface type='user'><model type='virtio'/></interface> (or type='network')` }
      }
      const verdicts = await Promise.all(facts.interfaces.map((i) => judgeInterface(ctx, i)))
      const summary = `api ${apiHost}:${port}; ${verdicts.map((v) => v.text).join('; ')}`
      const firstOk = verdicts.find((v) => v.level === 'ok')
      if (firstOk) return { level: 'ok', message: `guest of "${vm}" can reach the API: ${summary}` }
      const worst = verdicts.find((v) => v.level === 'fail') ?? verdicts[0]!
      return {
        level: worst.level,
        message: `guest of "${vm}" ${worst.level === 'fail' ? 'cannot' : 'may not'} reach the API: ${summary}`,
        ...(worst.fix ? { fix: worst.fix } : {})
      }
    }
  }
}

export const apiPortCheck: Check = {
  id: 'api_port',
  async run (ctx) {
    if (ctx.loaded === null) return notChecked('the config is not valid')
    const { api_host: host, api_port: port } = ctx.loaded.config
    if (ctx.service !== undefined) return { level: 'ok', message: `${host}:${port} is this service's: it answered this request` }
    const bind = await ctx.host.tryBind(host, port)
    if (bind === 'free') return { level: 'ok', message: `${host}:${port} is free (the service is not running, or listens elsewhere)` }
    if (bind === 'in_use') {
      if (listenHostKind(host) !== 'specific') {
        const answer = await ctx.host.httpGetLoopback(port, '/api/v1/status', 2000)
        const ours = answer !== null && isOurs(answer.body)
        if (ours) return { level: 'ok', message: `${host}:${port} is in use by kiosk-vm-watchdog (the service is running: ${ours})` }
      }
      return { level: 'fail', message: `${host}:${port} is in use by another program`, fix: `sudo ss -ltnp 'sport = :${port}' shows which; stop it or set api_port` }
    }
    if (bind === 'EADDRNOTAVAIL') return { level: 'fail', message: `api_host ${host} is not an address of this host`, fix: 'set api_host to 0.0.0.0 or one of: ip -brief addr' }
    if (bind === 'EACCES') return { level: 'fail', message: `${ctx.host.user().username} may not listen on port ${port} (below 1024)`, fix: 'set api_port to 1024 or above (8000 is what guest scripts expect)' }
    return { level: 'fail', message: `cannot listen on ${host}:${port}: ${bind}`, fix: 'check api_host and api_port' }
  }
}

/** A description of the running service when `body` is its status (or one of its error bodies). */
function isOurs (body: string): string | false {
  try {
    const json = JSON.parse(body) as { service?: string, version?: string, error?: { code?: string } }
    if (json.service === 'kiosk-vm-watchdog') return `version ${json.version ?? '?'}`
    if (json.error?.code === 'UNAUTHORIZED' || json.error?.code === 'FORBIDDEN') return 'status needs the admin token'
  } catch {}
  return false
}

interface FirewallRead { tool: string, text: string | null, problem?: string }

/** How nft and iptables say they lack CAP_NET_ADMIN (netlink EPERM, or iptables' own check). */
const PERMISSION_DENIED = /Operation not permitted|Permission denied|must be root|EPERM|EACCES/i

async function readFirewall (ctx: DoctorContext, tool: string, args: string[]): Promise<FirewallRead> {
  const r = await ctx.host.run(tool, args, 3000)
  if (r.error === 'ENOENT') return { tool, text: null, problem: 'not installed' }
  if (r.error !== undefined) return { tool, text: null, problem: r.error }
  if (r.code !== 0) return { tool, text: null, problem: (r.stderr.trim().split('\n')[0] || `exit ${r.code}`).slice(0, 200) }
  return { tool, text: r.stdout }
}

type RuleVerdict = { verdict: 'accepts' | 'drops' | 'default_drop' | 'open', detail: string }

function portIn (text: string, port: number): boolean {
  const m = /dports?\s+(\{[^}]*\}|[\d,:-]+)/.exec(text)
  if (!m) return false
  return m[1]!.replace(/[{}]/g, '').split(/[\s,]+/).filter(Boolean).some((p) => {
    const [lo, hi] = p.split(/[:-]/).map(Number) as [number, number | undefined]
    return hi === undefined ? lo === port : port >= lo && port <= hi
  })
}

export function judgeIptables (text: string, port: number): RuleVerdict {
  const lines = text.split('\n').map((l) => l.trim())
  const input = lines.filter((l) => l.startsWith('-A INPUT '))
  const forPort = input.filter((l) => /-p tcp|-p 6\b/.test(l) && portIn(l.replace(/--dport /, 'dport '), port))
  const target = (l: string) => /-j (\w+)/.exec(l)?.[1] ?? ''
  const first = forPort[0]
  if (first && ['DROP', 'REJECT'].includes(target(first))) return { verdict: 'drops', detail: `iptables: ${first}` }
  if (first && target(first) === 'ACCEPT') return { verdict: 'accepts', detail: `iptables: ${first}` }
  const policyDrop = lines.some((l) => /^-P INPUT (DROP|REJECT)/.test(l))
  const catchAll = input.find((l) => /^-A INPUT( -m \w+)? -j (DROP|REJECT)/.test(l) && !/ -i | -s | -p /.test(l))
  if (policyDrop || catchAll) return { verdict: 'default_drop', detail: `iptables: ${policyDrop ? 'INPUT policy DROP' : catchAll}` }
  return { verdict: 'open', detail: 'iptables: INPUT accepts' }
}

export function judgeNft (text: string, port: number): RuleVerdict {
  let depth = 0
  let chainDepth = -1
  let isInput = false
  let defaultDrop: string | null = null
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (/^chain\s+\S+\s*\{/.test(line)) { chainDepth = depth; isInput = false }
    if (/type\s+filter\s+hook\s+input\b/.test(line)) {
      isInput = true
      if (/policy\s+drop/.test(line)) defaultDrop = line
    } else if (isInput && /tcp dport|th dport|dport/.test(line) && portIn(line, port)) {
      if (/\b(drop|reject)\b/.test(line)) return { verdict: 'drops', detail: `nft: ${line}` }
      if (/\baccept\b/.test(line)) return { verdict: 'accepts', detail: `nft: ${line}` }
    } else if (isInput && /^(drop|reject)\b/.test(line)) {
      defaultDrop = line
    }
    depth += (line.match(/\{/g)?.length ?? 0) - (line.match(/\}/g)?.length ?? 0)
    if (chainDepth >= 0 && depth <= chainDepth) { chainDepth = -1; isInput = false }
  }
  if (defaultDrop) return { verdict: 'default_drop', detail: `nft: ${defaultDrop}` }
  return { verdict: 'open', detail: 'nft: no input chain drops' }
}

export const firewallCheck: Check = {
  id: 'firewall',
  async run (ctx) {
    if (ctx.loaded === null) return notChecked('the config is not valid')
    const port = ctx.loaded.config.api_port
    const [nft, ipt] = await Promise.all([readFirewall(ctx, 'nft', ['list', 'ruleset']), readFirewall(ctx, 'iptables', ['-S'])])
    const readable = [nft, ipt].filter((r) => r.text !== null)
    const denied = (r: FirewallRead) => r.problem !== undefined && PERMISSION_DENIED.test(r.problem)
    if (readable.length === 0 && [nft, ipt].some(denied) && [nft, ipt].every((r) => denied(r) || r.problem === 'not installed')) {
      // Reading the rules needs CAP_NET_ADMIN: the service runs without any capability
      // (CapabilityBoundingSet= empty), so from inside it this is expected, not a finding.
      const where = ctx.service !== undefined ? 'the service runs without capabilities (its hardening)' : `user ${ctx.host.user().username} lacks CAP_NET_ADMIN`
      return {
        level: 'ok',
        message: `firewall not readable from here: ${where}; to check it, run as root: sudo nft list ruleset (or sudo iptables -S); TCP port ${port} must be accepted from the guest`
      }
    }
    if (readable.length === 0) {
      return {
        level: 'warn',
        message: `cannot read the firewall rules (nft: ${nft.problem}; iptables: ${ipt.problem}): make sure TCP port ${port} is accepted from the guest`,
        fix: 'sudo nft list ruleset (or sudo iptables -S) and look at the input chain'
      }
    }
    const verdicts = readable.map((r) => r.tool === 'nft' ? judgeNft(r.text!, port) : judgeIptables(r.text!, port))
    const drop = verdicts.find((v) => v.verdict === 'drops')
    const accept = verdicts.find((v) => v.verdict === 'accepts')
    const fixRule = `sudo nft add rule inet filter input tcp dport ${port} accept (or: sudo iptables -I INPUT -p tcp --dport ${port} -j ACCEPT), and make it persistent`
    if (drop) return { level: 'fail', message: `the firewall drops TCP port ${port}: ${drop.detail}`, fix: fixRule }
    const unread = [nft, ipt].filter((r) => r.text === null && r.problem !== 'not installed').map((r) => `${r.tool}: ${r.problem}`)
    const note = unread.length > 0 ? ` (could not read ${unread.join('; ')})` : ''
    if (accept) return { level: 'ok', message: `the firewall accepts TCP port ${port}: ${accept.detail}${note}` }
    const defaultDrop = verdicts.find((v) => v.verdict === 'default_drop')
    if (defaultDrop) {
      return { level: 'warn', message: `the firewall drops input by default and no rule names TCP port ${port} (${defaultDrop.detail}); loopback (user networking) is usually still accepted${note}`, fix: fixRule }
    }
    return { level: unread.length > 0 ? 'warn' : 'ok', message: `no firewall rule drops TCP port ${port} (${verdicts.map((v) => v.detail).join('; ')})${note}` }
  }
}
