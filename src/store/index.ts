// Persisted state and the audit trail, in the data directory (config data_dir).
export { StateFile, vmStatePath, type StateFileOptions } from './state-file.ts'
export {
  AuditLog, AUDIT_DEFAULTS, type AuditEntry, type AuditEntryInput, type AuditEventInput, type AuditLogOptions, type AuditQuery, type AuditReadResult
} from './audit-log.ts'
export { StoreError, type StoreLogger } from './fs.ts'
