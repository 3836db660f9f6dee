// The one registry of error codes the API answers with. A route throws an AppError with a code
// from here; the error handler in plugins/errors.ts turns it into
// `{ error: { code, message, details? }, detail }` with the registered status. 5xx messages are replaced by the registered text so internals never
// leak.

export const ERROR_CODES = {
  BAD_REQUEST: { status: 400, message: 'The request is not valid' },
  BAD_SNAPSHOT_NAME: { status: 400, message: 'The snapshot name is not valid' },
  UNAUTHORIZED: { status: 401, message: 'A valid admin token is required' },
  FORBIDDEN: { status: 403, message: 'This client may not call this endpoint' },
  CROSS_SITE_REQUEST: { status: 403, message: 'A page on another site may not run actions here' },
  HOST_NOT_ALLOWED: { status: 403, message: 'The Host header does not name this service: add the name to security.allowed_hosts' },
  NOT_FOUND: { status: 404, message: 'No such route' },
  UNKNOWN_VM: { status: 404, message: 'No such VM' },
  SNAPSHOT_NOT_FOUND: { status: 404, message: 'No such snapshot' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed' },
  CONFLICT: { status: 409, message: 'The action conflicts with the current state' },
  NO_REVISION: { status: 409, message: 'There is no earlier revision to roll back to' },
  SNAPSHOT_VM_NOT_RUNNING: { status: 409, message: 'The VM is not running: a snapshot now would hold no memory state, and a revert to it would boot the VM from disk. Start the VM first, or pass allow_stopped=true' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported content type' },
  RATE_LIMITED: { status: 429, message: 'Too many requests' },
  INTERNAL: { status: 500, message: 'Internal error' },
  LIBVIRT_ERROR: { status: 502, message: 'libvirt refused the operation' },
  SNAPSHOT_KEPT_AS_REVISION: { status: 502, message: 'The old snapshot was deleted, but libvirt refused to create the new one under its name: the new state is kept under a temporary revision name (NAME~STAMP, see GET /api/v1/snapshots), which reverts use. Try the create again' },
  LIBVIRT_UNAVAILABLE: { status: 503, message: 'libvirt is not reachable' },
  NOT_READY: { status: 503, message: 'The service is not ready' },
  AUDIT_UNREADABLE: { status: 503, message: 'The audit trail cannot be read: audit.jsonl in the data directory is damaged or not a file (the service log names it)' },
  STATE_NOT_SAVED: { status: 503, message: 'The change could not be saved in the data directory (disk full, read-only or damaged), so it was not made: the previous setting stays in force. The service log names the file.' }
} as const satisfies Record<string, { status: number, message: string }>

export type ErrorCode = keyof typeof ERROR_CODES

export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details: Record<string, unknown> | undefined

  constructor (code: ErrorCode, message?: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code].message, options)
    this.name = 'AppError'
    this.code = code
    this.statusCode = ERROR_CODES[code].status
    this.details = details
  }
}

/**
 * The body every error response has. `detail` repeats the message as exhibition-vm-controller
 * (FastAPI) put it: EVC's web UI and scripts show `detail` from a failed call.
 */
export interface ErrorBody {
  error: { code: string, message: string, details?: Record<string, unknown> }
  detail: string
}

/** The error body of CODE with MESSAGE (and DETAILS), `detail` included. */
export function errorBodyOf (code: ErrorCode, message: string, details?: Record<string, unknown>): ErrorBody {
  return { error: { code, message, ...(details ? { details } : {}) }, detail: message }
}
