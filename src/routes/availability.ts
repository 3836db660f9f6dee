// GET /api/v1/availability?from=&to=[&vm=][&format=csv]: the share of opening hours each VM was
// healthy, the time lost by cause, its reverts and the 24-hour strip's pieces, as JSON or CSV
// (format=csv or Accept: text/csv). Register once, under /api/v1. The figures come from
// src/availability (calc.ts is pure); the summary shape is shared with GET /api/v1/vms/{vm}.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { CAUSES, STRIP_KINDS, type Figures } from '../availability/calc.ts'
import type { VmReport } from '../availability/service.ts'
import { AppError } from '../errors.ts'
import { instantOf, parseDay } from '../schedule/zone.ts'
import { errorResponses, iso } from './schemas.ts'

/** The longest range one request may ask for. */
export const AVAILABILITY_MAX_DAYS = 400

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/
const DATE = /^\d{4}-\d{2}-\d{2}$/
const instantField = (name: string) => z.string().max(40).optional().refine(
  (v) => v === undefined || (DATE.test(v) ? parseDay(v) !== null : DATE_TIME.test(v) && Number.isFinite(Date.parse(v))),
  { message: `${name} must be a date-time with its offset (2026-11-23T09:00:00Z, 2026-11-23T10:00:00+01:00) or a day (2026-11-23: local midnight in the configured timezone)` }
)

const querySchema = z.object({
  from: instantField('from').describe('Start (included): ISO 8601 date-time with offset, or YYYY-MM-DD (local midnight). Default: today\'s local midnight'),
  to: instantField('to').describe('End (excluded): as from. Default and at most: now'),
  vm: z.string().max(64).optional().describe('One VM (default: every watched VM)'),
  format: z.enum(['json', 'csv']).optional().describe('csv: one line per VM (also with Accept: text/csv)')
})

const lostSchema = z.object(Object.fromEntries(CAUSES.map((c) => [c, z.number()])) as Record<typeof CAUSES[number], z.ZodNumber>)
  .describe('Seconds of opening hours lost, by cause: hang (no heartbeats, frozen screen), vm_down (VM not running), guest_request, maintenance (technician, manual stop, scheduled reverts), closed (closed-hours maintenance inside opening hours), unmonitored (the service was not running)')

/** Today's or this week's figures (GET /api/v1/vms/{vm}) and the head of each VM in /availability. */
export const availabilitySummarySchema = z.object({
  from: z.string(),
  to: z.string(),
  history_from: z.string().nullable().describe('The first instant of the range the state history knows; earlier time is left out'),
  opening_seconds: z.number().describe('Opening hours within [history_from, to)'),
  healthy_seconds: z.number(),
  ratio: z.number().nullable().describe('healthy_seconds / opening_seconds; null without opening hours in the range'),
  lost_seconds: lostSchema,
  closed_seconds: z.number().describe('Known time outside opening hours (not in the ratio)'),
  reverts: z.number()
})

const vmReportSchema = availabilitySummarySchema.extend({
  vm: z.string(),
  revert_marks: z.array(z.object({ at: z.string(), reason: z.string().nullable(), source: z.string().nullable(), cause: z.enum(CAUSES) })),
  strip: z.array(z.object({ from: z.string(), to: z.string(), kind: z.enum(STRIP_KINDS) })).describe('What the dashboard\'s strip draws, in order; none: nothing known')
})

const reportSchema = z.object({
  timezone: z.string(),
  from: z.string(),
  to: z.string(),
  vms: z.array(vmReportSchema)
})

const seconds = (ms: number) => Math.round(ms) / 1000

export function summaryBody (f: Figures): z.infer<typeof availabilitySummarySchema> {
  return {
    from: iso(f.from)!,
    to: iso(f.to)!,
    history_from: iso(f.historyFrom),
    opening_seconds: seconds(f.openMs),
    healthy_seconds: seconds(f.healthyMs),
    ratio: f.ratio === null ? null : Math.round(f.ratio * 1e6) / 1e6,
    lost_seconds: Object.fromEntries(CAUSES.map((c) => [c, seconds(f.lostMs[c])])) as Record<typeof CAUSES[number], number>,
    closed_seconds: seconds(f.closedMs),
    reverts: f.reverts.length
  }
}

function reportBody (r: VmReport): z.infer<typeof vmReportSchema> {
  return {
    vm: r.vm,
    ...summaryBody(r),
    revert_marks: r.reverts.map((m) => ({ at: iso(m.at)!, reason: m.reason, source: m.source, cause: m.cause })),
    strip: r.strip.map((p) => ({ from: iso(p.from)!, to: iso(p.to)!, kind: p.kind }))
  }
}

const CSV_COLUMNS = ['vm', 'from', 'to', 'history_from', 'opening_seconds', 'healthy_seconds', 'ratio', ...CAUSES.map((c) => `lost_${c}_seconds`), 'closed_seconds', 'reverts']

function csvCell (value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value)
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

export function toCsv (vms: ReadonlyArray<z.infer<typeof vmReportSchema>>): string {
  const rows = vms.map((v) => [v.vm, v.from, v.to, v.history_from, v.opening_seconds, v.healthy_seconds, v.ratio, ...CAUSES.map((c) => v.lost_seconds[c]), v.closed_seconds, v.reverts])
  return [CSV_COLUMNS, ...rows].map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n'
}

const availabilityRoutes: FastifyPluginAsyncZod = async (app) => {
  const instant = (text: string): number => DATE.test(text) ? instantOf(parseDay(text)!, 0, app.availability.timezone) : Date.parse(text)

  app.get('/availability', {
    config: { access: 'read' },
    schema: {
      summary: 'Availability: the share of opening hours each VM was healthy, time lost by cause, reverts, the 24-hour strip (JSON, or CSV with format=csv / Accept: text/csv)',
      querystring: querySchema,
      produces: ['application/json', 'text/csv'],
      response: {
        200: z.union([reportSchema, z.string().describe('text/csv: a header line, then one line per VM')]),
        ...errorResponses(400, 401, 403, 404, 429)
      }
    }
  }, async (request, reply) => {
    const q = request.query
    const now = app.clock.now()
    const from = q.from === undefined ? app.availability.windowStarts(now).today : instant(q.from)
    const to = q.to === undefined ? now : Math.min(instant(q.to), now)
    if (from > now) throw new AppError('BAD_REQUEST', `from (${iso(from)}) is in the future (now: ${iso(now)})`, { field: 'from' })
    if (q.to !== undefined && instant(q.to) <= from) throw new AppError('BAD_REQUEST', `to (${q.to}) must be after from (${iso(from)})`, { field: 'to' })
    if (to - from > AVAILABILITY_MAX_DAYS * 86_400_000) throw new AppError('BAD_REQUEST', `from to to is longer than ${AVAILABILITY_MAX_DAYS} days: ask for a shorter range`, { field: 'from' })
    if (q.vm !== undefined && !app.availability.has(q.vm)) {
      throw new AppError('UNKNOWN_VM', `No VM named "${q.vm}" is watched here (watched: ${[...app.vms.keys()].join(', ')})`, { field: 'vm' })
    }
    const names = q.vm === undefined ? [...app.vms.keys()].filter((n) => app.availability.has(n)) : [q.vm]
    const vms = names.map((name) => reportBody(app.availability.report(name, from, to)))
    const csv = q.format === 'csv' || (q.format === undefined && /\btext\/csv\b/.test(request.headers.accept ?? ''))
    if (csv) {
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'inline; filename="availability.csv"').send(toCsv(vms))
    }
    return { timezone: app.availability.timezone, from: iso(from)!, to: iso(to)!, vms }
  })
}

export default availabilityRoutes
