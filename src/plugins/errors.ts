// Turns every error into `{ error: { code, message, details? } }` with a code from the one
// registry in src/errors.ts. 4xx messages say what is wrong with the request; 5xx messages are
// the registry's fixed text (the cause goes to the log, not to the client).
import fp from 'fastify-plugin'
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod'
import { AppError, ERROR_CODES, type ErrorBody, type ErrorCode } from '../errors.ts'
import { LibvirtError } from '../libvirt/index.ts'

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
  const byStatus: Record<number, ErrorCode> = { 400: 'BAD_REQUEST', 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED', 413: 'PAYLOAD_TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE', 429: 'RATE_LIMITED' }
  const code = e.statusCode !== undefined ? byStatus[e.statusCode] : undefined
  if (code) return new AppError(code, e.message && e.statusCode! < 500 ? e.message : undefined)
  return new AppError('INTERNAL', undefined, undefined, { cause: err })
}

export default fp(async function errorsPlugin (app) {
  app.setErrorHandler((err, request, reply) => {
    const appError = toAppError(err)
    const status = appError.statusCode
    if (status >= 500) {
      request.log.error({ err: (appError.cause as Error | undefined) ?? err, code: appError.code }, 'request failed')
    } else {
      request.log.info({ code: appError.code, msg: appError.message }, 'request refused')
    }
    const message = status >= 500 ? ERROR_CODES[appError.code].message : appError.message
    const body: ErrorBody = { error: { code: appError.code, message, ...(appError.details ? { details: appError.details } : {}) } }
    return reply.code(status).send(body)
  })
  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = { error: { code: 'NOT_FOUND', message: `No route ${request.method} ${request.url.split('?')[0]}` } }
    return reply.code(404).send(body)
  })
}, { name: 'errors', fastify: '5.x' })
