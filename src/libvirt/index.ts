// The public face of src/libvirt: the Hypervisor interface and a way to open one.
import { LibvirtHypervisor, type HypervisorOptions } from './connection.ts'

export { reconnectDelay } from './connection.ts'
import type { Hypervisor } from './types.ts'

export type { ConnectionEvent, Hypervisor, LifecycleEvent, SnapshotInfo } from './types.ts'
export { LibvirtError } from './errors.ts'
export { snapshotXml } from './xml.ts'

/** A Hypervisor over libvirt.so.0 for `uri`; call connect() before use. */
export function openHypervisor (uri: string, options?: HypervisorOptions): Hypervisor {
  return new LibvirtHypervisor(uri, options)
}
