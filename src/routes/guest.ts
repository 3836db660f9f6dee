// What the guest calls: heartbeats and revert requests. GET and POST alike (AutoIt's InetGet
// can only GET). Nothing a guest sends is refused for its form: the fields come from the query
// string and from a body of any kind (JSON, form fields; anything else is ignored), a field that
// is not valid is ignored, and every ignored thing is named in the answer (`details.ignored`).
// A heartbeat or a revert request is never lost to a parsing detail. One exception: a `vm` field
// given but not usable as a VM name (an object, a name too long) is refused 404, not credited to
// the default VM: that would keep the wrong VM alive while the sender's own went unwatched.
// Who asks decides the rules (request.requester, set by src/plugins/security.ts): a guest's
// revert request is held to the guest limits, a technician's (EVC's "Revert to Snapshot" button:
// GET /vm/restart) never is.
// Rate limits never cost a heartbeat: one over the limit is counted, then answered 429.
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { ackSchema, cleanText, errorResponses } from './schemas.ts'
import { normalizeAddress } from '../net/addresses.ts'
import { rateLimitedReply } from '../plugins/security.ts'
import { resolveVm } from './vm-context.ts'

/** Body bytes kept for reading fields; the rest of a longer body is read and dropped (up to GUEST_BODY_READ_MAX_BYTES), never refused. */
export const GUEST_BODY_KEEP_BYTES = 64 * 1024
/**
 * Body bytes read at most: past this the body is no longer read (the parser would otherwise drain
 * bodies of any size, past Fastify's bodyLimit); the request is answered from what was kept and
 * the connection closed (`Connection: close`), so the unread rest goes nowhere.
 */
export const GUEST_BODY_READ_MAX_BYTES = 1024 * 1024
/** Entries of `details.ignored` shown; the rest are counted in one last entry. */
export const IGNORED_SHOWN_MAX = 20
/** The longest `vm` value taken as a VM name. */
const VM_NAME_MAX = 64
/** The content type every guest POST is parsed as (the client's own is kept aside, see preParsing). */
const GUEST_BODY_TYPE = 'application/x-kvw-guest-body'

/** A guest request's body as the catch-all parser hands it over. */
interface RawGuestBody {
  text: string
  /** The client's Content-Type header (undefined: none). */
  contentType: string | undefined
  droppedBytes: number
  /** Reading stopped at GUEST_BODY_READ_MAX_BYTES: the rest was not read. */
  stopped: boolean
}

const clientContentType = new WeakMap<object, string | undefined>()
/** Requests whose body was not read to its end (GUEST_BODY_READ_MAX_BYTES): answered with Connection: close. */
const stoppedReading = new WeakSet<object>()
/** What readGuestFields made of each request (read once, before the rate limit needs its `vm`). */
const readFields = new WeakMap<object, GuestRead>()
const HEARTBEAT_FIELDS = ['seq', 'status', 'vm'] as const
const REVERT_FIELDS = ['reason', 'vm'] as const

/** What the guest may send, read leniently; in the query string (GET, POST) or the body (POST). */
export interface GuestFields {
  seq?: number
  status?: string
  reason?: string
  vm?: string
}

/** What readGuestFields made of a request. */
export interface GuestRead {
  fields: GuestFields
  ignored: string[]
  /** A `vm` field was given but is no VM name (VALUE as sent): the request is about no known VM. */
  unusableVm?: { value: unknown }
}

const FIELD_DOCS = {
  seq: 'The guest\'s heartbeat counter, a whole number ≥ 0 (goes back after a revert). Not one: ignored.',
  status: 'Free text from the guest, e.g. "ok" (control characters removed, cut to 200 characters).',
  reason: 'Why the guest asks, e.g. "idle", "process_missing": any text, cleaned and cut to 200 characters.',
  vm: 'The VM (default: the VM of the source address, else the default VM; per-VM paths: /api/v1/vms/{vm}/...). An unknown name, or a value that is no name (an object, over 64 characters): 404.'
} as const

/** The documented fields; validation never refuses (every field is read by readGuestFields). */
function documentedFields (names: ReadonlyArray<keyof typeof FIELD_DOCS>) {
  return z.looseObject(Object.fromEntries(names.map((n) => [n, z.unknown().optional().describe(FIELD_DOCS[n])])))
}

/** The fields of a body by its content type: JSON object or form fields; anything else is ignored (said in IGNORED). */
function bodyFields (body: RawGuestBody | undefined, ignored: string[]): Record<string, unknown> {
  if (body === undefined) return {}
  if (body.stopped) ignored.push(`body: only the first ${GUEST_BODY_KEEP_BYTES} bytes read; reading stopped after ${GUEST_BODY_READ_MAX_BYTES} bytes, the rest not read (connection closed)`)
  else if (body.droppedBytes > 0) ignored.push(`body: only the first ${GUEST_BODY_KEEP_BYTES} bytes read (${body.droppedBytes} more dropped)`)
  const text = body.text
  if (text.trim() === '') return {}
  const type = (body.contentType ?? '').split(';')[0]!.trim().toLowerCase()
  const shown = type === '' ? 'no content type' : `content type ${type.slice(0, 60)}`
  const looksJson = /^\s*[{[]/.test(text)
  if (type.includes('json') || (looksJson && !type.includes('form'))) {
    try {
      const parsed: unknown = JSON.parse(text)
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>
      ignored.push(`body: JSON but not an object (${shown})`)
    } catch {
      ignored.push(`body: not valid JSON (${shown})`)
    }
    return {}
  }
  if (type === 'application/x-www-form-urlencoded' || /^[\w.%+-]+=/.test(text)) {
    return Object.fromEntries(new URLSearchParams(text))
  }
  ignored.push(`body: not read (${shown}; send JSON or form fields)`)
  return {}
}

/** Shows a value the client sent, short, for the `ignored` list. */
function shown (value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value)
  return text.length > 40 ? `${text.slice(0, 40)}…` : text
}

/** IGNORED with at most IGNORED_SHOWN_MAX entries: the first ones, then how many more there were. */
function capped (ignored: string[]): string[] {
  if (ignored.length <= IGNORED_SHOWN_MAX) return ignored
  return [...ignored.slice(0, IGNORED_SHOWN_MAX), `… and ${ignored.length - IGNORED_SHOWN_MAX} more not shown`]
}

/**
 * Reads the fields NAMES from the query string and the body (the body wins, except with a null or
 * empty value), never refusing: what is not valid is left out and named in `ignored`.
 */
export function readGuestFields (request: FastifyRequest, names: ReadonlyArray<keyof GuestFields>): GuestRead {
  const ignored: string[] = []
  const query = (request.query !== null && typeof request.query === 'object' ? request.query : {}) as Record<string, unknown>
  const body = bodyFields(request.body as RawGuestBody | undefined, ignored)
  // A template that always sends every field (`{"vm": null}`) does not unset the query's value.
  // Object.fromEntries, not assignment: a "__proto__" key stays a plain (ignored) field.
  const raw: Record<string, unknown> = Object.fromEntries([
    ...Object.entries(query),
    ...Object.entries(body).filter(([key, value]) => !((value === null || value === '') && Object.hasOwn(query, key)))
  ])
  const fields: GuestFields = {}
  let unusableVm: GuestRead['unusableVm']
  for (const [key, value] of Object.entries(raw)) {
    if (!(names as readonly string[]).includes(key)) {
      ignored.push(`${key.slice(0, 40)}: not a field of this endpoint`)
      continue
    }
    if (value === undefined || value === null || value === '') continue
    const single = Array.isArray(value) && value.length > 0 ? value[value.length - 1] : value
    if (single !== value) ignored.push(`${key}: given ${(value as unknown[]).length} times, the last one used`)
    switch (key as keyof GuestFields) {
      case 'seq': {
        const n = typeof single === 'number' ? single : typeof single === 'string' && /^\s*\d+\s*$/.test(single) ? Number(single) : NaN
        if (Number.isSafeInteger(n) && n >= 0) fields.seq = n
        else ignored.push(`seq: not a whole number ≥ 0 (${shown(single)})`)
        break
      }
      case 'status':
      case 'reason': {
        if (typeof single !== 'string' && typeof single !== 'number' && typeof single !== 'boolean') {
          ignored.push(`${key}: not text (${shown(single)})`)
          break
        }
        const cleaned = cleanText(String(single))
        for (const change of cleaned.changes) ignored.push(`${key}: ${change}`)
        if (cleaned.text !== '') fields[key as 'status' | 'reason'] = cleaned.text
        break
      }
      case 'vm': {
        const name = typeof single === 'number' ? String(single) : single
        if (typeof name === 'string' && name.length <= VM_NAME_MAX) {
          fields.vm = name
        } else {
          ignored.push(`vm: not a VM name (${shown(single)})`)
          unusableVm = { value: single }
        }
        break
      }
    }
  }
  return { fields, ignored: capped(ignored), ...(unusableVm !== undefined ? { unusableVm } : {}) }
}

const BOTH = ['GET', 'POST'] as const

const guestRoutes: FastifyPluginAsyncZod = async (app) => {
  // This plugin's own scope: every body is taken as it comes (a stream read to its end, at most
  // GUEST_BODY_KEEP_BYTES kept), whatever its content type, and read by readGuestFields.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    const chunks: Buffer[] = []
    let kept = 0
    let dropped = 0
    let finished = false
    const finish = (stopped: boolean) => {
      if (finished) return
      finished = true
      const body: RawGuestBody = { text: Buffer.concat(chunks).toString('utf8'), contentType: clientContentType.get(request.raw), droppedBytes: dropped, stopped }
      done(null, body)
    }
    const onData = (chunk: Buffer) => {
      const take = Math.min(GUEST_BODY_KEEP_BYTES - kept, chunk.length)
      if (take > 0) chunks.push(chunk.subarray(0, take))
      kept += take
      dropped += chunk.length - take
      if (kept + dropped >= GUEST_BODY_READ_MAX_BYTES) {
        // Enough: read no further (paused, not destroyed: that would end the socket before the
        // answer). The answer closes the connection (onSend below), leaving the rest unread.
        payload.off('data', onData)
        payload.pause()
        stoppedReading.add(request.raw)
        finish(true)
      }
    }
    payload.on('data', onData)
    // A client that goes away mid-body: what arrived is still a heartbeat.
    payload.on('end', () => { finish(false) })
    payload.on('error', () => { finish(false) })
  })
  app.addHook('onSend', async (request, reply) => {
    if (stoppedReading.has(request.raw)) reply.header('connection', 'close')
  })
  // Before Fastify looks at the Content-Type (a malformed one would be 415): keep the client's
  // aside and have every body parsed by the catch-all parser above.
  app.addHook('preParsing', async (request, _reply, payload) => {
    clientContentType.set(request.raw, request.headers['content-type'])
    request.raw.headers['content-type'] = GUEST_BODY_TYPE
    return payload
  })
  // Once the body is in: the fields, read once. The body becomes them, so the guest rate limit
  // (a preHandler, src/plugins/security.ts) counts a JSON body's `vm` as that VM's.
  app.addHook('preValidation', async (request) => {
    const read = readGuestFields(request, request.routeOptions.config.liveness === true ? HEARTBEAT_FIELDS : REVERT_FIELDS)
    readFields.set(request.raw, read)
    // An unusable `vm` stays as sent: the rate limit counts it as an unknown VM's, not the default's.
    request.body = read.unusableVm !== undefined ? { ...read.fields, vm: read.unusableVm.value } : read.fields
  })
  const fieldsOf = (request: FastifyRequest): GuestRead => readFields.get(request.raw) ?? { fields: {}, ignored: [] }
  /**
   * The request's VM (vm-context.ts). A `vm` field that is no VM name is refused like an unknown
   * name, unless the path names the VM (then the field is only listed in details.ignored).
   */
  const vmOf = (request: FastifyRequest, read: GuestRead) => {
    if (read.unusableVm !== undefined && (request.params as { vm?: string } | undefined)?.vm === undefined) {
      throw new AppError('UNKNOWN_VM', `No VM is named by the vm field (${shown(read.unusableVm.value)}): a VM name is text of at most ${VM_NAME_MAX} characters (watched: ${[...app.vms.keys()].join(', ')})`, { field: 'vm' })
    }
    return resolveVm(app, request, read.fields.vm)
  }

  const guestSchema = (method: 'GET' | 'POST', summary: string, names: ReadonlyArray<keyof typeof FIELD_DOCS>, response: Record<number, z.ZodType>) => ({
    summary,
    querystring: documentedFields(names),
    ...(method === 'POST' ? { body: z.union([documentedFields(names), z.unknown()]).describe('Any body: a JSON object or form fields with the same fields; anything else is ignored (named in details.ignored)') } : {}),
    response
  })

  for (const method of BOTH) {
    app.route({
      method,
      url: '/heartbeat',
      config: { access: 'guest', liveness: true },
      schema: guestSchema(method, 'Heartbeat from the guest (about once a second); never refused for its form (details.ignored names what was not used); over the guest rate limit still counted, answered 429',
        HEARTBEAT_FIELDS, { 200: ackSchema, ...errorResponses(401, 403, 404, 429) }),
      handler: async (request, reply) => {
        const read = fieldsOf(request)
        const { fields, ignored } = read
        const vm = vmOf(request, read)
        // Counted first: a heartbeat that arrived proves the guest alive, whatever the limit says.
        vm.watchdog.heartbeat({ seq: fields.seq, status: fields.status, source: normalizeAddress(request.socket.remoteAddress ?? '') })
        const over = request.overLimit
        if (over !== null) {
          return rateLimitedReply(reply, over, `Heartbeat counted, but too many from ${over.address || 'this client'} for VM "${vm.name}": at most ${over.max} a minute; retry in ${over.retryAfterSeconds} s`, { counted: true })
        }
        return {
          message: 'Heartbeat received',
          details: { vm: vm.name, seq: fields.seq ?? null, state: vm.watchdog.view().state, requester: request.requester, ...(ignored.length > 0 ? { ignored } : {}) }
        }
      }
    })
  }

  for (const [url, defaultReason, summary] of [
    ['/revert/request', 'guest_request', 'The guest asks for a revert, with a reason'],
    ['/vm/restart', 'guest_restart_request', 'Revert (exhibition-vm-controller\'s name: its guest scripts call it, and its web UI\'s "Revert to Snapshot" button)']
  ] as const) {
    for (const method of BOTH) {
      app.route({
        method,
        url,
        config: { access: 'guest' },
        schema: guestSchema(method, `${summary}. From a guest network: held to the guest rules (guest_revert_min_interval, max_reverts, maintenance: 409). From the host (loopback not in guest_networks), with the admin token or on the admin listener: a technician's revert, never refused by them. Never refused for its form (details.ignored)`,
          REVERT_FIELDS, { 202: ackSchema, ...errorResponses(401, 403, 404, 409, 429) }),
        handler: async (request, reply) => {
          const read = fieldsOf(request)
          const { fields, ignored } = read
          const vm = vmOf(request, read)
          const requester = request.requester ?? 'guest'
          const reason = fields.reason ?? (requester === 'technician' ? 'technician' : defaultReason)
          const result = vm.watchdog.requestRevert(reason, requester)
          const details = { vm: vm.name, reason, requester, ...(ignored.length > 0 ? { ignored } : {}) }
          if (result.outcome === 'refused') throw new AppError('CONFLICT', `Revert not started: ${result.why ?? 'refused'}`, details)
          return reply.code(202).send({
            message: result.outcome === 'started' ? 'Revert started' : 'A revert is already under way',
            details: { ...details, outcome: result.outcome }
          })
        }
      })
    }
  }
}

export default guestRoutes
