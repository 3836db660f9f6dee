// Opening hours per VM: the config block, the pure "what does the schedule want now" and the
// runtime that drives a watchdog. See README.md.
export { Scheduler } from './scheduler.ts'
