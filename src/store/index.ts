// Persisted state and the audit trail, in the data directory (config data_dir).
export { StateFile, vmStatePath } from './state-file.ts'
export { AuditLog, type AuditEntry, type AuditEventInput, type AuditQuery } from './audit-log.ts'
export { StoreError } from './fs.ts'
export { RequestAuditSummary } from './audit-summary.ts'
export { DataDirLockedError, lockDataDir, LOCK_FILE, type DataDirLock } from './lock.ts'
export { type StateLoadReport } from './state-file.ts'
