// Which VM a request is about: the `:vm` path parameter on /api/v1/vms/{vm}/..., else an explicit
// `vm` query/body field (newer guest scripts), else the heartbeat's source address (old guest
// scripts send nothing; `guest_addresses` in config maps addresses to VMs), else the default VM.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { z } from 'zod'
import { AppError } from '../errors.ts'
import { normalizeAddress } from '../net/addresses.ts'
import type { VmContext } from '../plugins/vms.ts'
import { ackSchema, actionRoute, type App } from './schemas.ts'

export function resolveVm (app: FastifyInstance, request: FastifyRequest, explicit?: string): VmContext {
  const params = request.params as { vm?: string } | undefined
  const name = params?.vm ?? explicit
  const bySource = app.vmsByAddress.get(normalizeAddress(request.socket.remoteAddress ?? ''))
  if (name !== undefined) {
    const vm = app.vms.get(name)
    if (!vm) throw new AppError('UNKNOWN_VM', `No VM named "${name}" is watched here (watched: ${[...app.vms.keys()].join(', ')})`)
    // A guest mapped to its VM by address (guest_addresses) may not speak for another VM.
    if (bySource !== undefined && bySource !== vm && request.routeOptions.config.access === 'guest') {
      throw new AppError('FORBIDDEN', `${normalizeAddress(request.socket.remoteAddress ?? '')} is the guest of "${bySource.name}" (guest_addresses), not of "${name}"`)
    }
    return vm
  }
  return bySource ?? app.vms.get(app.defaultVm)!
}

/** The acknowledgement every action answers with (exhibition-vm-controller's envelope). */
export type Ack = z.output<typeof ackSchema>

export interface VmActionOptions<F extends z.ZodObject> {
  summary: string
  /** Query (GET) or query and JSON body (POST) fields; a `vm` field names the VM. */
  fields: F
  /** The status of a successful answer. */
  status: 200 | 201 | 202
  /** Response schemas of the refusals the route can answer with (errorResponses). */
  refusals: Record<number, z.ZodType>
}

/**
 * A technician's action on one VM: `route` is "METHODS /url" (e.g. "GET POST /vm/start"),
 * admin access, the acknowledgement body. The VM (path, `vm` field, guest address, default) is
 * resolved before `handler` runs, which returns the acknowledgement.
 */
export function vmAction<F extends z.ZodObject> (app: App, route: string, options: VmActionOptions<F>, handler: (vm: VmContext, fields: z.output<F>, request: FastifyRequest) => Promise<Ack>): void {
  const parts = route.split(' ')
  const url = parts.pop()!
  actionRoute(app, {
    methods: parts as Array<'GET' | 'POST'>,
    url,
    access: 'admin',
    summary: options.summary,
    fields: options.fields,
    response: { [options.status]: ackSchema, ...options.refusals },
    handler: async (fields, request, reply) => {
      const vm = resolveVm(app, request, (fields as { vm?: string }).vm)
      return reply.code(options.status).send(await handler(vm, fields, request))
    }
  })
}
