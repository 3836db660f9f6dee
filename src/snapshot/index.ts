// Snapshots with revisions, rollback and checks, on top of the Hypervisor interface.
export { SnapshotService, type SnapshotCheck } from './service.ts'
export { parseRevisionName, revisionName, snapshotRefSchema } from './names.ts'
