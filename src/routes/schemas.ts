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
  })
})

/** Response schemas for the error statuses a route can answer with. */
export function errorResponses<const S extends readonly number[]> (...statuses: S): { [K in S[number]]: typeof errorSchema } {
  return Object.fromEntries(statuses.map((s) => [s, errorSchema])) as { [K in S[number]]: typeof errorSchema }
}

/** The body of every action's answer (exhibition-vm-controller's envelope). */
export const ackSchema = z.object({ message: z.string(), details: z.record(z.string(), z.unknown()) })

export const vmField = z.string().max(64).optional().describe('The VM (default: the default VM; per-VM paths: /api/v1/vms/{vm}/...)')
export const reasonField = z.string().max(200).regex(/^[\w .:,/-]*$/, 'letters, digits, spaces and _ . : , / - only').optional()
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
