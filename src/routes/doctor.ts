// GET /api/v1/doctor: the same checks as `kiosk-vm-watchdog doctor`, run inside the service (the
// heartbeat facts come from the live watchdogs, the port is known to be ours). Requests that
// arrive while a run is under way share it: the checks start programs and read files.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { DoctorReport, Host } from '../doctor/index.ts'
import { errorResponses } from './schemas.ts'

export const checkResultSchema = z.object({
  id: z.string().describe('Stable id; per-VM checks end in ":VM" (e.g. "snapshot:kiosk").'),
  level: z.enum(['ok', 'warn', 'fail']),
  message: z.string().describe('What the check found.'),
  fix: z.string().optional().describe('What to do: a command or a config key.')
})

export const doctorReportSchema = z.object({
  ok: z.boolean().describe('false when any check failed'),
  config: z.string().nullable().describe('The config file the service read (null: defaults only).'),
  counts: z.object({ ok: z.int(), warn: z.int(), fail: z.int() }),
  checks: z.array(checkResultSchema)
})

export interface DoctorRouteOptions {
  /** For tests: the host the checks look at (default: the real one). */
  host?: Host
}

const doctorRoutes: FastifyPluginAsyncZod<DoctorRouteOptions> = async (app, options) => {
  let running: Promise<DoctorReport> | null = null
  app.get('/doctor', {
    // Admin: it runs host commands and shows paths and host details; not for guests.
    config: { access: 'admin' },
    schema: {
      summary: 'Diagnose the host, libvirt, each VM and the service (the CLI\'s `doctor`, as JSON)',
      response: { 200: doctorReportSchema, ...errorResponses(401, 403, 429) }
    }
  }, async () => {
    // Loaded on first use: the checks are not needed to watch VMs (issue 15: start time, memory).
    running ??= import('../doctor/index.ts').then(({ runDoctor }) => runDoctor({
      configFile: app.config.file,
      loaded: app.config,
      hypervisor: app.hypervisor,
      now: () => app.clock.now(),
      service: { watchdogs: app.hasDecorator('watchdogs') ? app.watchdogs : undefined },
      ...(options.host ? { host: options.host } : {})
    })).finally(() => { running = null })
    const report = await running
    return { ok: report.ok, config: app.config.file, counts: report.counts, checks: report.checks }
  })
}

export default doctorRoutes
