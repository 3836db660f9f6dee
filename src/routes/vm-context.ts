// Which VM a request is about: the `:vm` path parameter on /api/v1/vms/{vm}/..., else an explicit
// `vm` query/body field (newer guest scripts), else the heartbeat's source address (old guest
// scripts send nothing; `guest_addresses` in config maps addresses to VMs), else the default VM.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AppError } from '../errors.ts'
import { normalizeAddress } from '../net/addresses.ts'
import type { VmContext } from '../plugins/vms.ts'

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
