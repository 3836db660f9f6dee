// The few fields we read from libvirt's own (machine-written) XML, and the one document we write.
// A full XML parser would be a dependency for five fields; libvirt's output format is stable.
import type { SnapshotInfo } from './types.ts'

const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&amp;': '&', '&quot;': '"', '&apos;': '\'' }

export function xmlEscape (text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', '\'': '&apos;' })[c] ?? c)
}

export function xmlUnescape (text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos);/g, (e) => ENTITIES[e] ?? e)
}

function firstTag (xml: string, tag: string): string | null {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml)
  return match?.[1] !== undefined ? xmlUnescape(match[1]) : null
}

/** Reads a <domainsnapshot> document: the snapshot's own fields come before its nested <domain>. */
export function parseSnapshotXml (xml: string, isCurrent: boolean): SnapshotInfo {
  const own = xml.split(/<domain[\s>]/)[0] ?? xml
  const state = firstTag(own, 'state') ?? 'unknown'
  const memory = /<memory\s+snapshot=['"](\w+)['"]/.exec(own)?.[1] ?? null
  const liveState = state === 'running' || state === 'paused' || state === 'blocked'
  return {
    name: firstTag(own, 'name') ?? '',
    creationTime: Number(firstTag(own, 'creationTime') ?? 0),
    state,
    // Without a <memory> element (older libvirt, test driver) a snapshot of a live domain holds its memory.
    hasMemory: liveState && memory !== 'no' && memory !== 'external',
    isCurrent,
    description: firstTag(own, 'description')
  }
}

/** A <domainsnapshot> document for virDomainSnapshotCreateXML. */
export function snapshotXml (name: string, description?: string): string {
  const desc = description ? `<description>${xmlEscape(description)}</description>` : ''
  return `<domainsnapshot><name>${xmlEscape(name)}</name>${desc}</domainsnapshot>`
}
