// Snapshots with revisions, rollback and checks, on top of the Hypervisor interface.
export {
  SnapshotService, type CreateResult, type RollbackResult, type SnapshotCheck, type SnapshotEntry,
  type SnapshotLogger, type SnapshotServiceOptions
} from './service.ts'
export {
  REVISION_SEPARATOR, assertBaseName, assertSnapshotRef, parseRevisionName, revisionName, revisionStamp, snapshotRefSchema
} from './names.ts'
