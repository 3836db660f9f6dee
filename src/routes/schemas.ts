// Zod schemas shared by routes: the error body, and the query flags EVC's guest scripts send.
import { z } from 'zod'

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
