// What routes share: the error body, the acknowledgement body, field schemas, and actionRoute(),
// which registers an action that takes its fields from the query string (GET, as AutoIt and a
// technician's browser send them) or from the query string and a JSON body (POST).
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Access } from '../plugins/security.ts'

export const errorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional()
  }),
  detail: z.string().describe('The message again, where exhibition-vm-controller put it (its web UI shows `detail` from a failed call)')
})

/** Response schemas for the error statuses a route can answer with. */
export function errorResponses<const S extends readonly number[]> (...statuses: S): { [K in S[number]]: typeof errorSchema } {
  return Object.fromEntries(statuses.map((s) => [s, errorSchema])) as { [K in S[number]]: typeof errorSchema }
}

/** The body of every action's answer (exhibition-vm-controller's envelope). */
export const ackSchema = z.object({ message: z.string(), details: z.record(z.string(), z.unknown()) })

export const vmField = z.string().max(64).optional().describe('The VM (default: the default VM; per-VM paths: /api/v1/vms/{vm}/...)')
/** The longest reason (or guest status) kept, in characters; longer ones are cut, not refused. */
export const REASON_MAX_CHARS = 200
/** Any text: cleaned and cut by cleanText() where it is used (a reason is never refused for its characters). */
export const reasonField = z.string().optional()

/**
 * Free text from a client (a revert reason, a guest's status) made safe to record: valid
 * Unicode, control and format characters (newlines, escapes, bidi marks) removed, runs of
 * whitespace made one space, trimmed, cut to MAX characters. What was changed is said in
 * `changes` (for the answer's `ignored` list); an empty result means "none given".
 */
export function cleanText (text: string, max = REASON_MAX_CHARS): { text: string, changes: string[] } {
  const changes: string[] = []
  const wellFormed = text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
  if (wellFormed !== text) changes.push('broken UTF-16 replaced')
  const noControls = wellFormed.replace(/[\t\n\r\v\f]/g, ' ').replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, '')
  if (noControls !== wellFormed.replace(/[\t\n\r\v\f]/g, ' ')) changes.push('control characters removed')
  const spaced = noControls.replace(/\s+/g, ' ').trim()
  const chars = Array.from(spaced)
  if (chars.length > max) changes.push(`cut to ${max} characters (was ${chars.length})`)
  return { text: chars.slice(0, max).join('').trim(), changes }
}
/** true/false in JSON, or true/false/1/0 in a query string. */
export const flagField = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])], { error: 'expected true, false, 1 or 0' }).optional()
  .transform((v) => v === true || v === 'true' || v === '1')

/** The app as a zod-typed route plugin sees it. */
export type App = Parameters<FastifyPluginAsyncZod>[0]

export interface ActionRouteOptions<F extends z.ZodObject> {
  methods: readonly ('GET' | 'POST')[]
  url: string
  access: Access
  /** The liveness signal (the heartbeat): see `liveness` in src/plugins/security.ts. */
  liveness?: boolean
  summary: string
  fields: F
  response: Record<number, z.ZodType>
  handler: (fields: z.output<F>, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
}

/** Registers one route per method; POST also accepts the fields as a JSON body (it wins over the query). */
export function actionRoute<F extends z.ZodObject> (app: App, options: ActionRouteOptions<F>): void {
  for (const method of options.methods) {
    app.route({
      method,
      url: options.url,
      config: { access: options.access, ...(options.liveness ? { liveness: true } : {}) },
      schema: {
        summary: options.summary,
        querystring: options.fields,
        ...(method === 'POST' ? { body: options.fields.nullish() } : {}),
        response: options.response
      },
      handler: async (request, reply) => {
        const body = request.body !== null && typeof request.body === 'object' ? request.body : {}
        return options.handler({ ...(request.query as object), ...body } as z.output<F>, request, reply)
      }
    })
  }
}

/** Epoch ms as ISO 8601 (UTC), null stays null. */
export function iso (ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString()
}
