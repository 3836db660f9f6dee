// Snapshots of a VM: list, create, roll back to the previous revision, delete. The configured
// snapshot (snapshot_name) is created as a new revision (keep_revisions > 0) or replaced in place
// (0); any other name is created with exactly that name, replacing a same-named one (EVC).
// Changes run through the VM's action queue, never beside a revert.
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
const createQuery = snapshotQuery.extend({ allow_stopped: flagField.describe('true: take the configured snapshot even while the VM is shut off (it then holds no memory state; a revert to it boots the VM)') })
const nameParams = z.object({ name: snapshotRefSchema.describe('A snapshot name, revisions (ready~20260101T000000.000Z) included') })
const deleteQuery = vmQuery.extend({ force: flagField.describe('true: delete even the snapshot reverts use (the previous revision of snapshot_name becomes active)') })
const snapshotDetailSchema = z.object({
  name: z.string(),
  creation_time: z.string().nullable(),
  state: z.string(),
  has_memory: z.boolean(),
  is_current: z.boolean(),
  revision_of: z.string().nullable(),
  description: z.string().nullable(),
  is_target: z.boolean().describe('The snapshot a revert uses now')
})
const refusals = errorResponses(400, 401, 403, 404, 409, 429, 502, 503)

const snapshotRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/snapshots', {
    config: { access: 'read' },
    schema: {
      summary: 'The VM\'s snapshots, revisions included',
      querystring: vmQuery,
      response: {
        200: z.object({
          vm_name: z.string(),
          snapshots: z.array(z.string()).describe('Every snapshot name (exhibition-vm-controller\'s field)'),
          snapshot_name: z.string(),
          snapshot_target: z.string().nullable().describe('The snapshot a revert uses now (the newest version of snapshot_name)'),
          snapshot_details: z.array(snapshotDetailSchema).describe('The same snapshots with their data, in the order of snapshots')
        }),
        ...refusals
      }
    }
  }, async (request) => {
    const vm = resolveVm(app, request, request.query.vm)
    const snapshots = await vm.snapshots.list(vm.name)
    return {
      vm_name: vm.name,
      snapshots: snapshots.map((s) => s.name),
      snapshot_name: vm.config.snapshot_name,
      snapshot_target: snapshots.find((s) => s.isActive && s.base === vm.config.snapshot_name)?.name ?? null,
      snapshot_details: snapshots.map((s) => ({
        name: s.name,
        creation_time: s.creationTime ? new Date(s.creationTime * 1000).toISOString() : null,
        state: s.state,
        has_memory: s.hasMemory,
        is_current: s.isCurrent,
        revision_of: s.revisionOf ?? null,
        description: s.description,
        is_target: s.isActive && s.base === vm.config.snapshot_name
      }))
    }
  })

  vmAction(app, 'GET POST /snapshot/create', { status: 201, fields: createQuery, refusals, summary: 'Snapshot the VM as it is now. The configured snapshot_name: a new revision (the old one is kept; keep_revisions 0: replaced in place). Another name: created with exactly that name, a same-named one replaced' }, async (vm, fields) => {
    const name = fields.snapshot_name ?? vm.config.snapshot_name
    const configured = name === vm.config.snapshot_name
    const result = await vm.watchdog.runExclusive('snapshot_create', () => vm.snapshots.create(vm.name, name, {
      // Only the configured snapshot is what reverts use: refuse a disk-only one unless asked for.
      requireRunning: configured && !fields.allow_stopped,
      ...(configured ? {} : { mode: 'replace' as const })
    }))
    const auditError = await auditAfter(app.log, vm, { kind: 'snapshot_create', reason: 'technician', snapshot: name, created: result.snapshot, outcome: 'ok', ...(result.revision ? { revision: result.revision } : {}), ...(result.replaced ? { replaced: result.replaced } : {}), has_memory: result.hasMemory, ...(result.warning ? { warning: result.warning } : {}) })
    const warnings = [result.warning, auditError].filter((w) => w !== undefined && w !== null)
    if (!result.hasMemory) warnings.push('the VM was not running: this snapshot holds no memory state, a revert to it boots the VM')
    return {
      message: `Snapshot "${name}" created${result.replaced ? ' (the old one replaced)' : ''}${warnings.length > 0 ? ` (but: ${warnings.join('; ')})` : ''}`,
      details: { vm: vm.name, snapshot: name, created: result.snapshot, previous_kept_as: result.revision ?? null, replaced: result.replaced !== null, has_memory: result.hasMemory, ...(warnings.length > 0 ? { warnings } : {}) }
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
    const result = await vm.watchdog.runExclusive('snapshot_delete', () => vm.snapshots.delete(vm.name, name, { force, protect: vm.config.snapshot_name }))
    const auditError = await auditAfter(app.log, vm, { kind: 'snapshot_delete', reason: 'technician', snapshot: name, outcome: 'ok' })
    return { message: `Snapshot "${name}" deleted${auditError === null ? '' : ` (but: ${auditError})`}`, details: { vm: vm.name, snapshot: name, active: result.active, ...(auditError === null ? {} : { warnings: [auditError] }) } }
  }
  app.delete('/snapshot/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a snapshot by its exact name (the one reverts use only with force=true)', params: nameParams, querystring: deleteQuery, response: { 200: ackSchema, ...refusals } }
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
