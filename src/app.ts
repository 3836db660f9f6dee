// Builds the Fastify app from a loaded config and its dependencies. It never listens and never
// reads files or the environment: server.ts does that, tests call buildApp and use app.inject.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod'
import type { LoadedConfig } from './config/load.ts'
import type { Host as DoctorHost } from './doctor/index.ts'
import type { Hypervisor } from './libvirt/index.ts'
import { realTimers, systemClock, type Clock, type TimerPort } from './ports/index.ts'
import errorsPlugin, { frameworkErrors } from './plugins/errors.ts'
import hypervisorPlugin from './plugins/hypervisor.ts'
import alertsPlugin from './plugins/alerts.ts'
import availabilityPlugin from './plugins/availability.ts'
import dashboardPlugin from './plugins/dashboard.ts'
import docsPlugin from './plugins/docs.ts'
import metricsPlugin from './plugins/metrics.ts'
import securityPlugin from './plugins/security.ts'
import sessionPlugin from './plugins/session.ts'
import apiRoutes from './routes/index.ts'
import vmsPlugin from './plugins/vms.ts'
import streamRoutes from './routes/stream.ts'
import sessionRoutes from './routes/session.ts'

export interface BuildAppOptions {
  config: LoadedConfig
  hypervisor: Hypervisor
  /** A pino logger (server.ts makes one); tests usually pass none. */
  logger?: FastifyBaseLogger
  /** Wall-clock time (default: the system's). */
  clock?: Clock
  /** Every timer the app's services arm (default: real, unref'd timers). Tests pass a fake clock for both. */
  timers?: TimerPort
  /** What `GET /api/v1/doctor` inspects (files, commands, users); default: this machine. */
  doctorHost?: DoctorHost
}

declare module 'fastify' {
  interface FastifyInstance {
    config: LoadedConfig
    clock: Clock
    timers: TimerPort
    startedAt: number
  }
}

export async function buildApp (options: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    // Heartbeats arrive every second: one is not worth a log line. Refusals and failures are
    // logged by the error handler; state changes by the watchdog.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    return503OnClosing: true,
    // URL errors Fastify raises before routing (a broken %-escape, an over-long segment) get the
    // same error body as everything else.
    frameworkErrors
  }).withTypeProvider<ZodTypeProvider>()
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)

  const clock = options.clock ?? systemClock
  app.decorate('config', options.config)
  app.decorate('clock', clock)
  app.decorate('timers', options.timers ?? realTimers)
  app.decorate('startedAt', clock.now())

  await app.register(errorsPlugin)
  await app.register(hypervisorPlugin, { hypervisor: options.hypervisor })
  // Before any route: it adds the access check and rate limit to each route as it is registered.
  await app.register(securityPlugin)
  // The dashboard's login sessions, which the security plugin accepts in place of the token.
  await app.register(sessionPlugin)
  // Also before the routes: it collects them into the OpenAPI document (/docs).
  await app.register(docsPlugin)
  // One watchdog per VM (with snapshots, persisted state and the audit trail).
  await app.register(vmsPlugin)
  // Each VM's state changes, for the availability figures (before the metrics, which read them).
  await app.register(availabilityPlugin)
  // Observers of the watchdogs (they subscribe when the app is ready).
  await app.register(metricsPlugin)
  await app.register(alertsPlugin)
  await app.register(streamRoutes)
  await app.register(sessionRoutes, { prefix: '/api/v1' })
  await app.register(dashboardPlugin)
  await app.register(apiRoutes, { prefix: '/api/v1', ...(options.doctorHost ? { doctorHost: options.doctorHost } : {}) })
  return app
}
