// Opening hours per VM: the config block, the pure "what does the schedule want now" and the
// runtime that drives a watchdog. See README.md.
export { scheduleSchema, compileSchedule, parseDayHours, parseDateRange, WEEKDAYS, type ScheduleConfig, type Weekday } from './config.ts'
export { scheduleState, type ScheduleState, type ScheduleAction, type ScheduleActionKind } from './state.ts'
export { Scheduler, realTimers, MAX_WAIT_MS, PREVENTIVE_REVERT_REASON, type SchedulerOptions, type ScheduleTarget, type ScheduleView, type TimerPort } from './scheduler.ts'
export { isValidTimeZone, systemTimeZone, instantOf, localTime } from './zone.ts'
