// GET /screen.png: the VM's screen as a PNG thumbnail (at most 320 pixels wide), for the
// dashboard and for saving as a screen.error_images reference. Register it under /api/v1 (the
// default VM, or ?vm=) and under /api/v1/vms/:vm.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { ImageError } from '../screen/index.ts'
import { errorResponses } from './schemas.ts'
import { resolveVm } from './vm-context.ts'

/** A screenshot younger than this is served again instead of taking a new one. */
export const SCREEN_MAX_AGE_MS = 2000

const screenQuery = z.object({ vm: z.string().max(64).optional() })

const screenRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/screen.png', {
    config: { access: 'read' },
    schema: {
      summary: 'The VM\'s screen now, as a PNG thumbnail (at most 320 pixels wide; at most 2 s old)',
      querystring: screenQuery,
      produces: ['image/png'],
      response: {
        200: z.any().describe('image/png; header x-screen-taken-at: when it was taken (ISO 8601)'),
        ...errorResponses(401, 403, 404, 409, 429, 500, 502, 503)
      }
    }
  }, async (request, reply) => {
    const vm = resolveVm(app, request, request.query.vm)
    // Asked first: some drivers (libvirt's test driver) hand out a picture of a stopped VM.
    const state = await app.hypervisor.domainState(vm.name)
    if (state.state !== 'running' && state.state !== 'paused') {
      throw new AppError('CONFLICT', `VM "${vm.name}" is ${state.state}: it has no screen`, { vm: vm.name, vm_state: state.state })
    }
    let capture
    try {
      capture = await vm.screen.screen(SCREEN_MAX_AGE_MS)
    } catch (err) {
      if (err instanceof ImageError) throw new AppError('INTERNAL', undefined, undefined, { cause: err })
      throw err
    }
    return reply
      .header('content-type', 'image/png')
      .header('cache-control', 'no-store')
      .header('x-screen-taken-at', new Date(capture.takenAt).toISOString())
      .send(capture.png)
  })
}

export default screenRoutes
