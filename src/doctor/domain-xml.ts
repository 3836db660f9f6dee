// The few facts the doctor reads from libvirt's domain and network XML: disks and their format,
// the firmware loader, the network interfaces. libvirt writes this XML itself (attributes
// quoted with ' or "), so a handful of regular expressions is enough; no XML dependency.
import { xmlUnescape } from '../libvirt/xml.ts'

export interface DiskInfo {
  /** 'disk', 'cdrom', 'floppy', 'lun' */
  device: string
  /** 'file', 'block', 'network', 'volume' */
  type: string
  /** <driver type=…>: 'qcow2', 'raw'...; null when not stated. */
  format: string | null
  target: string | null
  source: string | null
  readonly: boolean
}

export type InterfaceInfo =
  | { type: 'network', network: string, mac: string | null }
  | { type: 'bridge', bridge: string, mac: string | null }
  | { type: 'user', mac: string | null }
  | { type: 'direct', device: string | null, mac: string | null }
  | { type: string, mac: string | null }

export interface DomainFacts {
  /** The domain type: 'kvm', 'qemu' (TCG), 'test'... */
  type: string | null
  disks: DiskInfo[]
  /** <loader type='pflash'>: UEFI firmware in flash. */
  pflash: boolean
  loaderPath: string | null
  interfaces: InterfaceInfo[]
  /** A virtio channel named org.qemu.guest_agent.0 is declared. */
  hasAgentChannel: boolean
}

function attr (tag: string, name: string): string | null {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:'([^']*)'|"([^"]*)")`).exec(tag)
  if (!m) return null
  return xmlUnescape(m[1] ?? m[2] ?? '')
}

/** Each `<tag …>…</tag>` or `<tag …/>` element: its opening tag and its inner text. */
function elements (xml: string, tag: string): Array<{ open: string, inner: string }> {
  const out: Array<{ open: string, inner: string }> = []
  const re = new RegExp(`<${tag}(\\s[^>]*?)?(/?)>`, 'g')
  let m: RegExpExecArray | null
  while ((m = re.exec(xml)) !== null) {
    const open = m[0]
    if (m[2] === '/') {
      out.push({ open, inner: '' })
      continue
    }
    const close = xml.indexOf(`</${tag}>`, re.lastIndex)
    const inner = close === -1 ? '' : xml.slice(re.lastIndex, close)
    out.push({ open, inner })
    if (close !== -1) re.lastIndex = close + tag.length + 3
  }
  return out
}

function firstTag (xml: string, tag: string): string | null {
  return new RegExp(`<${tag}(\\s[^>]*?)?/?>`).exec(xml)?.[0] ?? null
}

export function parseDomainXml (xml: string): DomainFacts {
  const domainTag = firstTag(xml, 'domain')
  const disks = elements(xml, 'disk').map(({ open, inner }): DiskInfo => {
    const driver = firstTag(inner, 'driver')
    const source = firstTag(inner, 'source')
    const target = firstTag(inner, 'target')
    return {
      device: attr(open, 'device') ?? 'disk',
      type: attr(open, 'type') ?? 'file',
      format: driver ? attr(driver, 'type') : null,
      target: target ? attr(target, 'dev') : null,
      source: source ? (attr(source, 'file') ?? attr(source, 'dev') ?? attr(source, 'name') ?? attr(source, 'volume')) : null,
      readonly: /<readonly\s*\/?>/.test(inner)
    }
  })
  const loader = elements(xml, 'loader')[0]
  const interfaces = elements(xml, 'interface').map(({ open, inner }): InterfaceInfo => {
    const type = attr(open, 'type') ?? 'unknown'
    const source = firstTag(inner, 'source')
    const macTag = firstTag(inner, 'mac')
    const mac = macTag ? attr(macTag, 'address') : null
    if (type === 'network') return { type, network: (source && attr(source, 'network')) ?? 'default', mac }
    if (type === 'bridge') return { type, bridge: (source && attr(source, 'bridge')) ?? '', mac }
    if (type === 'direct') return { type, device: source ? attr(source, 'dev') : null, mac }
    return { type, mac }
  })
  return {
    type: domainTag ? attr(domainTag, 'type') : null,
    disks,
    pflash: loader !== undefined && attr(loader.open, 'type') === 'pflash',
    loaderPath: loader ? xmlUnescape(loader.inner.trim()) || null : null,
    interfaces,
    hasAgentChannel: /name\s*=\s*['"]org\.qemu\.guest_agent\.0['"]/.test(xml)
  }
}

export interface NetworkFacts {
  name: string
  /** <forward mode=…>: 'nat', 'route', 'bridge', 'open'...; null: isolated network. */
  forward: string | null
  bridge: string | null
  /** The host's addresses on this network, with their prefix length. */
  addresses: Array<{ address: string, prefix: number }>
}

function netmaskToPrefix (mask: string): number {
  return mask.split('.').reduce((bits, octet) => bits + (Number(octet) >>> 0).toString(2).split('').filter((b) => b === '1').length, 0)
}

export function parseNetworkXml (xml: string): NetworkFacts {
  const nameMatch = /<name>([^<]*)<\/name>/.exec(xml)
  const forward = firstTag(xml, 'forward')
  const bridge = firstTag(xml, 'bridge')
  const addresses = elements(xml, 'ip').flatMap(({ open }) => {
    const address = attr(open, 'address')
    if (address === null) return []
    const prefix = attr(open, 'prefix')
    const netmask = attr(open, 'netmask')
    const family = attr(open, 'family')
    return [{ address, prefix: prefix !== null ? Number(prefix) : netmask !== null ? netmaskToPrefix(netmask) : (family === 'ipv6' ? 64 : 24) }]
  })
  return {
    name: nameMatch?.[1] !== undefined ? xmlUnescape(nameMatch[1]) : '',
    forward: forward ? (attr(forward, 'mode') ?? 'nat') : null,
    bridge: bridge ? attr(bridge, 'name') : null,
    addresses
  }
}
