// Turns every error into `{ error: { code, message, details? }, detail }` with a code from the one
// registry in src/errors.ts (`detail` is the message again: EVC's clients read it). 4xx messages say what is wrong with the request; 5xx messages are
// the registry's fixed text (the cause goes to the log, not to the client).
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod'
import { AppError, ERROR_CODES, errorBodyOf, type ErrorBody, type ErrorCode } from '../errors.ts'
import { LibvirtError } from '../libvirt/index.ts'

/** The router's maxParamLength (app.ts); named in the error for a longer path segment. */
const MAX_PARAM_LENGTH = 200

/** Maps any thrown value to an AppError. */
export function toAppError (err: unknown): AppError {
  if (err instanceof AppError) return err
  if (err instanceof LibvirtError) {
    if (err.isDisconnected) return new AppError('LIBVIRT_UNAVAILABLE')
    if (err.isNoDomain) return new AppError('UNKNOWN_VM', 'libvirt has no such domain', { libvirt: err.codeName })
    if (err.isNoSnapshot) return new AppError('SNAPSHOT_NOT_FOUND', 'libvirt has no such snapshot', { libvirt: err.codeName })
    return new AppError('LIBVIRT_ERROR', undefined, { libvirt: err.codeName, operation: err.operation }, { cause: err })
  }
  const e = err as { statusCode?: number, code?: string, message?: string, validation?: unknown }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const problems = err.validation.map((v) => `${v.instancePath.replace(/^\//, '').replace(/\//g, '.') || 'request'}: ${v.message}`)
    return new AppError('BAD_REQUEST', `${err.validationContext ?? 'request'} is not valid: ${problems.join('; ')}`)
  }
  if (e.code === 'FST_ERR_MAX_PARAM_LENGTH') return new AppError('BAD_REQUEST', `A path segment is longer than ${MAX_PARAM_LENGTH} characters`)
  if (e.code === 'FST_ERR_BAD_URL') return new AppError('BAD_REQUEST', 'The URL is not valid (a broken %-escape?)')
  const byStatus: Record<number, ErrorCode> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED', 413: 'PAYLOAD_TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE', 429: 'RATE_LIMITED' }
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined
  // Any other 4xx from Fastify or a plugin (e.g. @fastify/static's 403 for a path it refuses) is
  // still the client's mistake, never an internal error.
  const code = status === undefined ? undefined : (byStatus[status] ?? (status >= 400 && status < 500 ? 'BAD_REQUEST' : undefined))
  if (code) return new AppError(code, e.message && status! < 500 ? e.message : undefined)
  return new AppError('INTERNAL', undefined, undefined, { cause: err })
}

/** 5xx: the registry's fixed text and nothing else (the details go to the log). */
function errorBody (appError: AppError): ErrorBody {
  if (appError.statusCode >= 500) return errorBodyOf(appError.code, ERROR_CODES[appError.code].message)
  return errorBodyOf(appError.code, appError.message, appError.details)
}

/**
 * Fastify's `frameworkErrors` option (set it in the Fastify constructor: the router's own errors,
 * a bad %-escape or an over-long path segment, never reach the error handler). Without it those
 * answer Fastify's `{ error: "Bad Request", code: "FST_ERR_…" }`, not this API's envelope.
 */
export function frameworkErrors (err: Error, request: FastifyRequest, reply: FastifyReply): void {
  const appError = toAppError(err)
  request.log.info({ code: appError.code, reason: appError.message }, 'request refused')
  closeIfBodyUnread(request, reply)
  reply.code(appError.statusCode).send(errorBody(appError))
}

/**
 * Refused before its body was read (access checks run on onRequest, the router and the not-found
 * handler never read one): close the connection rather than let Node read and discard an upload
 * of any size to keep it alive (Fastify does the same for 413 and body-parse errors). A client
 * that writes its whole body before reading may then see a reset instead of the answer.
 */
function closeIfBodyUnread (request: FastifyRequest, reply: FastifyReply): void {
  const length = request.headers['content-length']
  const declaresBody = request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  if (declaresBody && !request.raw.complete) reply.header('connection', 'close')
}

export default fp(async function errorsPlugin (app) {
  app.setErrorHandler((err, request, reply) => {
    const appError = toAppError(err)
    const status = appError.statusCode
    if (status >= 500) {
      request.log.error({ err: (appError.cause as Error | undefined) ?? err, code: appError.code }, 'request failed')
    } else if (appError.code === 'RATE_LIMITED') {
      // A flood is answered 429 by the thousand: one info line each would flood the journal too.
      request.log.debug({ code: appError.code, reason: appError.message }, 'request refused')
    } else {
      request.log.info({ code: appError.code, reason: appError.message }, 'request refused')
    }
    closeIfBodyUnread(request, reply)
    return reply.code(status).send(errorBody(appError))
  })
  app.setNotFoundHandler((request, reply) => {
    closeIfBodyUnread(request, reply)
    return reply.code(404).send(errorBodyOf('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`))
  })
}, { name: 'errors', fastify: '5.x' })
