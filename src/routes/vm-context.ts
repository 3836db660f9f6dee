// Which VM a request is about: the `:vm` path parameter on /api/v1/vms/{vm}/..., else an explicit
// `vm` query/body field (newer guest scripts), else the heartbeat's source address (old guest
// scripts send nothing; `guest_addresses` in config maps addresses to VMs), else the default VM.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AppError } from '../errors.ts'
import { normalizeAddress } from '../plugins/security.ts'
import type { VmContext } from '../plugins/vms.ts'

export { normalizeAddress }

export function resolveVm (app: FastifyInstance, request: FastifyRequest, explicit?: string): VmContext {
  const params = request.params as { vm?: string } | undefined
  const name = params?.vm ?? explicit
  if (name !== undefined) {
    const vm = app.vms.get(name)
    if (!vm) throw new AppError('UNKNOWN_VM', `No VM named "${name}" is watched here (watched: ${[...app.vms.keys()].join(', ')})`)
    return vm
  }
  const bySource = app.vmsByAddress.get(normalizeAddress(request.socket.remoteAddress ?? ''))
  return bySource ?? app.vms.get(app.defaultVm)!
}
