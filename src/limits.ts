// Limits and defaults that both a route (which refuses bad input with a 400) and the runtime
// (which refuses it from any caller) check: one number, so the two never drift apart.

/** The longest maintenance a technician may ask for: a year, in minutes. */
export const MAINTENANCE_MAX_MINUTES = 365 * 24 * 60

/** Seconds a guest must wait between the reverts it causes (security.guest_revert_min_interval). */
export const GUEST_REVERT_MIN_INTERVAL_DEFAULT = 60
