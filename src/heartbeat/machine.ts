// The heartbeat state machine of one VM: step(state, event, now, settings) -> { state, actions }.
// Pure: no timers, no I/O, no clock. Time comes in as `now` (epoch ms); the runtime
// (watchdog.ts) arms one timer at nextDeadline(state) and feeds a `tick` when it fires, and
// carries out the actions (revert, destroy, shutdown, log, audit, alert, persist).
//
// The reported state is one of starting | healthy | late | reverting | grace | maintenance |
// exhausted. Manual stop and closing hours are maintenance with their own `reason` ('stopped',
// 'closed'), next to 'technician' and 'config' (auto_revert_enabled: false), so a dashboard
// needs one rule: "maintenance means nothing reverts on its own", and the reason says why.
//
// This file is the entry; the parts live in machine/ (see src/heartbeat/README.md).
export type * from './machine/types.ts'
export { step, initialState, toPersisted } from './machine/step.ts'
export { nextDeadline } from './machine/deadlines.ts'
export { publicState, recentRevertCount, detectorView, type DetectorView } from './machine/views.ts'
export { GUEST_REVERT_MIN_INTERVAL_DEFAULT } from './machine/settings.ts'
export { PHI_EPOCHS, PHI_EPOCH_GAPS, PHI_MIN_SAMPLES, addGap, crossingMs, emptyWindow, fitModel, phi, restoreWindow, type PhiModel } from './machine/detector.ts'
