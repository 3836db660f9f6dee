// The heartbeat machine's settings as src/heartbeat/watchdog.ts builds them for a VM (its config,
// here the schema's defaults, and the guest revert interval's default), with a test's own values.
import { VM_DEFAULTS } from '../../src/config/schema.ts'
import { GUEST_REVERT_MIN_INTERVAL_DEFAULT, type MachineSettings } from '../../src/heartbeat/machine.ts'

export function machineSettings (overrides: Partial<MachineSettings> = {}): MachineSettings {
  return { ...VM_DEFAULTS, guest_revert_min_interval: GUEST_REVERT_MIN_INTERVAL_DEFAULT, ...overrides }
}

/** Short timings the pure machine's tests count with: 10 s timeout, 30 s startup grace, 3 reverts an hour. */
export const SHORT_TIMING_SETTINGS: MachineSettings = machineSettings({
  heartbeat_timeout: 10,
  adaptive_learning: 60,
  startup_grace: 30,
  post_revert_grace: 20,
  max_reverts: 3,
  revert_retry_max: 60
})
