// Numeric values from libvirt's public headers (libvirt-domain.h, libvirt-domain-snapshot.h,
// virterror.h), with the names we report. Index = libvirt's value.
import type { DomainStateName, LifecycleEventType } from './types.ts'

export const DOMAIN_STATE_NAMES: readonly DomainStateName[] = [
  'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'
]

/** virDomain<State>Reason, per state. */
export const DOMAIN_STATE_REASONS: Record<DomainStateName, readonly string[]> = {
  nostate: ['unknown'],
  running: ['unknown', 'booted', 'migrated', 'restored', 'from_snapshot', 'unpaused', 'migration_canceled', 'save_canceled', 'wakeup', 'crashed', 'postcopy', 'postcopy_failed'],
  blocked: ['unknown'],
  paused: ['unknown', 'user', 'migration', 'save', 'dump', 'ioerror', 'watchdog', 'from_snapshot', 'shutting_down', 'snapshot', 'crashed', 'starting_up', 'postcopy', 'postcopy_failed', 'api_error'],
  shutdown: ['unknown', 'user'],
  shutoff: ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot', 'daemon'],
  crashed: ['unknown', 'panicked'],
  pmsuspended: ['unknown']
}

export const LIFECYCLE_EVENT_NAMES: readonly LifecycleEventType[] = [
  'defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'
]

/** virDomainEvent<Type>DetailType, per event type. */
export const LIFECYCLE_DETAIL_NAMES: Record<LifecycleEventType, readonly string[]> = {
  defined: ['added', 'updated', 'renamed', 'from_snapshot'],
  undefined: ['removed', 'renamed'],
  started: ['booted', 'migrated', 'restored', 'from_snapshot', 'wakeup'],
  suspended: ['paused', 'migrated', 'ioerror', 'watchdog', 'restored', 'from_snapshot', 'api_error', 'postcopy', 'postcopy_failed'],
  resumed: ['unpaused', 'migrated', 'from_snapshot', 'postcopy', 'postcopy_failed'],
  stopped: ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot'],
  shutdown: ['finished', 'guest', 'host'],
  pmsuspended: ['memory', 'disk'],
  crashed: ['panicked', 'crashloaded']
}

export const CLOSE_REASONS = ['error', 'eof', 'keepalive', 'client'] as const

export const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
export const VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC = 1 << 7
export const VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING = 1 << 0
export const VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN = 1 << 0

/** The virErrorNumber values we name or act on. */
export const ERROR_NAMES: Record<number, string> = {
  1: 'VIR_ERR_INTERNAL_ERROR',
  3: 'VIR_ERR_NO_SUPPORT',
  5: 'VIR_ERR_NO_CONNECT',
  6: 'VIR_ERR_INVALID_CONN',
  7: 'VIR_ERR_INVALID_DOMAIN',
  8: 'VIR_ERR_INVALID_ARG',
  9: 'VIR_ERR_OPERATION_FAILED',
  27: 'VIR_ERR_XML_ERROR',
  35: 'VIR_ERR_XML_DETAIL',
  38: 'VIR_ERR_SYSTEM_ERROR',
  39: 'VIR_ERR_RPC',
  42: 'VIR_ERR_NO_DOMAIN',
  45: 'VIR_ERR_AUTH_FAILED',
  55: 'VIR_ERR_OPERATION_INVALID',
  68: 'VIR_ERR_OPERATION_TIMEOUT',
  72: 'VIR_ERR_NO_DOMAIN_SNAPSHOT',
  77: 'VIR_ERR_SNAPSHOT_REVERT_RISKY',
  84: 'VIR_ERR_OPERATION_UNSUPPORTED',
  86: 'VIR_ERR_AGENT_UNRESPONSIVE',
  97: 'VIR_ERR_AGENT_UNSYNCED'
}

export const VIR_ERR_NO_SUPPORT = 3
export const VIR_ERR_NO_DOMAIN = 42
export const VIR_ERR_NO_DOMAIN_SNAPSHOT = 72
export const VIR_ERR_OPERATION_INVALID = 55
/**
 * Errors that prove libvirt answered (no such domain or snapshot, not valid in this state, bad
 * XML or argument, not supported): the connection works. After any other error it is checked.
 */
export const ANSWERED_ERROR_CODES = new Set([3, 8, 27, 35, 42, 55, 72, 77, 84])
