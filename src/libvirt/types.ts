// The Hypervisor interface: everything the rest of the service knows about libvirt.
// No FFI types leak out of src/libvirt; callers speak domain and snapshot names.

export const DOMAIN_STATES = [
  'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'
] as const
export type DomainStateName = typeof DOMAIN_STATES[number]

export interface DomainStateInfo {
  state: DomainStateName
  /** libvirt's numeric reason for the state (virDomain<State>Reason). */
  reason: number
  /** The reason as a word, e.g. 'booted', 'destroyed', 'from_snapshot'. */
  reasonName: string
}

export interface SnapshotInfo {
  name: string
  /** Seconds since the epoch, from the snapshot XML's <creationTime>. */
  creationTime: number
  /** The domain state recorded in the snapshot ('running', 'shutoff', ...). */
  state: string
  /** True when the snapshot holds memory state, so a revert resumes a running VM. */
  hasMemory: boolean
  isCurrent: boolean
  description: string | null
}

export const LIFECYCLE_EVENT_TYPES = [
  'defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'
] as const
export type LifecycleEventType = typeof LIFECYCLE_EVENT_TYPES[number]

export interface LifecycleEvent {
  domain: string
  type: LifecycleEventType
  /** libvirt's numeric detail (virDomainEvent<Type>DetailType). */
  detail: number
  /** The detail as a word, e.g. 'destroyed', 'from_snapshot', 'booted'. */
  detailName: string
}

export type ConnectionEvent =
  | { type: 'connected', uri: string }
  | { type: 'disconnected', uri: string, reason: string }

export interface Screenshot {
  mimeType: string
  data: Buffer
}

export interface Hypervisor {
  readonly uri: string
  /** Opens the connection (retrying is the caller's choice). Idempotent. */
  connect (): Promise<void>
  /** Closes the connection, stops reconnecting and unregisters every callback. */
  close (): Promise<void>
  /** True while a live connection is open. */
  readonly connected: boolean
  /** libvirt library version as "major.minor.micro". */
  libraryVersion (): string

  domainExists (domain: string): Promise<boolean>
  listDomains (): Promise<string[]>
  domainState (domain: string): Promise<DomainStateInfo>
  domainXml (domain: string): Promise<string>
  start (domain: string): Promise<void>
  shutdown (domain: string): Promise<void>
  destroy (domain: string): Promise<void>
  reboot (domain: string): Promise<void>

  listSnapshots (domain: string): Promise<SnapshotInfo[]>
  currentSnapshot (domain: string): Promise<string | null>
  snapshotXml (domain: string, snapshot: string): Promise<string>
  /** Creates a snapshot from <domainsnapshot> XML, atomically; returns its name. */
  createSnapshot (domain: string, xml: string): Promise<string>
  /** Reverts to the snapshot and forces the domain to be running afterwards. */
  revertToSnapshot (domain: string, snapshot: string): Promise<void>
  deleteSnapshot (domain: string, snapshot: string, options?: { children?: boolean }): Promise<void>

  /** Sends a QEMU guest-agent command (JSON text) and returns the reply JSON text. */
  agentCommand (domain: string, command: string, timeoutSeconds: number): Promise<string>
  /** A screenshot of the domain's first screen. */
  screenshot (domain: string): Promise<Screenshot>

  /** Subscribes to lifecycle events of every domain; returns an unsubscribe function. */
  onLifecycle (listener: (event: LifecycleEvent) => void): () => void
  /** Subscribes to connection changes (drop, reconnect); returns an unsubscribe function. */
  onConnection (listener: (event: ConnectionEvent) => void): () => void
}
