// The API under /api/v1. The per-VM routes are registered twice: at /api/v1 for the default VM
// (exhibition-vm-controller's paths; old guest scripts) and at /api/v1/vms/{vm} for any VM.
// An empty JSON body is no body here (EVC accepted it).
import type { FastifyPluginAsync } from 'fastify'
import type { Host as DoctorHost } from '../doctor/index.ts'
import availabilityRoutes from './availability.ts'
import doctorRoutes from './doctor.ts'
import eventsRoutes from './events.ts'
import guestRoutes from './guest.ts'
import snapshotRoutes from './snapshots.ts'
import statusRoutes from './status.ts'
import screenRoutes from './screen.ts'
import technicianRoutes from './technician.ts'
import vmListRoutes from './vms.ts'

const perVmRoutes: FastifyPluginAsync = async (app) => {
  for (const routes of [guestRoutes, technicianRoutes, snapshotRoutes, statusRoutes, eventsRoutes, screenRoutes]) await app.register(routes)
}

export interface ApiRoutesOptions {
  doctorHost?: DoctorHost
}

const apiRoutes: FastifyPluginAsync<ApiRoutesOptions> = async (app, options) => {
  // Fastify's JSON parser (same prototype-poisoning protection), except that an empty body with
  // `Content-Type: application/json` (curl -X POST -H 'Content-Type: application/json') is no
  // body rather than a 400. The guest routes take any body (guest.ts).
  const jsonParser = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString()
    if (text.trim() === '') {
      done(null, null)
      return
    }
    jsonParser(request, text, done)
  })
  await app.register(perVmRoutes)
  await app.register(perVmRoutes, { prefix: '/vms/:vm' })
  await app.register(vmListRoutes)
  await app.register(availabilityRoutes)
  await app.register(doctorRoutes, options.doctorHost ? { host: options.doctorHost } : {})
}

export default apiRoutes
