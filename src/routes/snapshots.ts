// Snapshots of a VM: list, create (keeping the previous one as a revision), roll back to the
// previous revision, delete. Changes run through the VM's action queue, never beside a revert.
import type { FastifyBaseLogger } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { snapshotNameSchema } from '../names.ts'
import { snapshotRefSchema } from '../snapshot/index.ts'
import { ackSchema, errorResponses, flagField, vmField } from './schemas.ts'
import type { VmContext } from '../plugins/vms.ts'
import { StoreError, type AuditEventInput } from '../store/index.ts'
import { resolveVm, vmAction } from './vm-context.ts'

const vmQuery = z.object({ vm: vmField })
const snapshotQuery = vmQuery.extend({ snapshot_name: snapshotNameSchema.optional().describe('Default: the VM\'s snapshot_name (ready).') })
const nameParams = z.object({ name: snapshotRefSchema.describe('A snapshot name, revisions (ready~20260101T000000.000Z) included') })
const deleteQuery = vmQuery.extend({ force: flagField.describe('true: delete even the active version (the previous revision becomes active)') })
const snapshotSchema = z.object({
  name: z.string(),
  creation_time: z.string().nullable(),
  state: z.string(),
  has_memory: z.boolean(),
  is_current: z.boolean(),
  revision_of: z.string().nullable(),
  description: z.string().nullable()
})
const refusals = errorResponses(400, 401, 403, 404, 409, 429, 502, 503)

const snapshotRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/snapshots', {
    config: { access: 'read' },
    schema: { summary: 'The VM\'s snapshots, revisions included', querystring: vmQuery, response: { 200: z.object({ vm_name: z.string(), snapshot_name: z.string(), snapshots: z.array(snapshotSchema) }), ...refusals } }
  }, async (request) => {
    const vm = resolveVm(app, request, request.query.vm)
    const snapshots = await vm.snapshots.list(vm.name)
    return {
      vm_name: vm.name,
      snapshot_name: vm.config.snapshot_name,
      snapshots: snapshots.map((s) => ({
        name: s.name,
        creation_time: s.creationTime ? new Date(s.creationTime * 1000).toISOString() : null,
        state: s.state,
        has_memory: s.hasMemory,
        is_current: s.isCurrent,
        revision_of: s.revisionOf ?? null,
        description: s.description
      }))
    }
  })

  vmAction(app, 'GET POST /snapshot/create', { status: 201, fields: snapshotQuery, refusals, summary: 'Snapshot the VM as it is now; an existing snapshot of that name is kept as a revision' }, async (vm, fields) => {
    const name = fields.snapshot_name ?? vm.config.snapshot_name
    const result = await vm.watchdog.runExclusive('snapshot_create', () => vm.snapshots.create(vm.name, name))
    const auditError = await auditAfter(app.log, vm, { kind: 'snapshot_create', reason: 'technician', snapshot: name, created: result.snapshot, outcome: 'ok', ...(result.revision ? { revision: result.revision } : {}) })
    const warnings = [result.warning, auditError].filter((w) => w !== undefined && w !== null)
    return {
      message: `Snapshot "${name}" created${warnings.length > 0 ? ` (but: ${warnings.join('; ')})` : ''}`,
      details: { vm: vm.name, snapshot: name, created: result.snapshot, previous_kept_as: result.revision ?? null, has_memory: result.hasMemory, ...(warnings.length > 0 ? { warnings } : {}) }
    }
  })

  vmAction(app, 'GET POST /snapshot/rollback', { status: 200, fields: snapshotQuery, refusals, summary: 'Make the previous revision the active snapshot again (the running VM is not touched)' }, async (vm, fields) => {
    const name = fields.snapshot_name ?? vm.config.snapshot_name
    const result = await vm.watchdog.runExclusive('snapshot_rollback', () => vm.snapshots.rollback(vm.name, name))
    const auditError = await auditAfter(app.log, vm, { kind: 'snapshot_rollback', reason: 'technician', snapshot: name, outcome: 'ok', revision: result.restored })
    return { message: `Snapshot "${name}" rolled back to ${result.restored}${auditError === null ? '' : ` (but: ${auditError})`}`, details: { vm: vm.name, snapshot: name, restored: result.restored, discarded: result.discarded, ...(auditError === null ? {} : { warnings: [auditError] }) } }
  })

  const deleteHandler = async (request: { params: { name: string }, query: z.infer<typeof deleteQuery> } & Parameters<typeof resolveVm>[1]) => {
    const vm = resolveVm(app, request, request.query.vm)
    const name = request.params.name
    const force = request.query.force
    const result = await vm.watchdog.runExclusive('snapshot_delete', () => vm.snapshots.delete(vm.name, name, { force }))
    const auditError = await auditAfter(app.log, vm, { kind: 'snapshot_delete', reason: 'technician', snapshot: name, outcome: 'ok' })
    return { message: `Snapshot "${name}" deleted${auditError === null ? '' : ` (but: ${auditError})`}`, details: { vm: vm.name, snapshot: name, active: result.active, ...(auditError === null ? {} : { warnings: [auditError] }) } }
  }
  app.delete('/snapshot/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a snapshot (not the active version unless force=true)', params: nameParams, querystring: deleteQuery, response: { 200: ackSchema, ...refusals } }
  }, (request) => deleteHandler(request))
  app.get('/snapshot/delete/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a snapshot (exhibition-vm-controller\'s GET path)', params: nameParams, querystring: deleteQuery, response: { 200: ackSchema, ...refusals } }
  }, (request) => deleteHandler(request))
}

/**
 * The audit entry of a snapshot change that already happened. Writing it is bookkeeping: when the
 * disk refuses, the answer still reports the change (it was made) and says the entry is missing.
 */
async function auditAfter (log: FastifyBaseLogger, vm: VmContext, entry: AuditEventInput): Promise<string | null> {
  try {
    await vm.audit(entry)
    return null
  } catch (err) {
    log.error({ err, vm: vm.name, kind: entry.kind }, 'the snapshot change was made, but its audit entry cannot be written')
    return `the audit trail could not be written (${err instanceof StoreError ? (err.errno ?? err.message) : 'see the log'})`
  }
}

export default snapshotRoutes
