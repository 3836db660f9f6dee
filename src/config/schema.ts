// The one schema of config.yaml. Key names follow exhibition-vm-controller (EVC) where it had
// them, so an EVC config file keeps working; the EVC keys we have no use for are accepted and
// ignored (listed at the end of configSchema) rather than rejected. Unknown keys are errors: a
// typo in a ten-year exhibition's config must not silently fall back to a default.
import { z } from 'zod'
import { GUEST_REVERT_MIN_INTERVAL_DEFAULT, MAINTENANCE_MAX_MINUTES } from '../limits.ts'
import { snapshotNameSchema, vmNameSchema } from '../names.ts'
import { scheduleSchema } from '../schedule/config.ts'
import { isValidTimeZone, systemTimeZone } from '../schedule/zone.ts'
import { screenSchema } from '../screen/config.ts'

/** A day: the default upper bound of a duration (timers overflow past 2^31 ms ≈ 24.8 days; nothing here needs that long). */
export const DAY_SECONDS = 86_400
/** Every duration has an upper bound: a typo (1e13) must not become "never" or an invalid date. */
const seconds = (min: number, max = DAY_SECONDS) => z.number().min(min).max(max, `at most ${max} s`).describe(`seconds, ${min} to ${max}`)
const count = (min: number, max: number) => z.int().min(min).max(max, `at most ${max}`)

/** An IP address or a host name; dotted numbers must be a real IPv4 address (999.1.1.1 is not). */
export const hostSchema = z.string().min(1).refine(
  (s) => z.ipv4().safeParse(s).success || z.ipv6().safeParse(s).success ||
    (!/^[\d.]+$/.test(s) && /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(s)),
  'not an IP address or host name (e.g. 0.0.0.0, 127.0.0.1, ::, localhost)'
)

type Outputs<S extends Record<string, z.ZodType>> = { -readonly [K in keyof S]: z.output<S[K]> }

/** What the heartbeat state machine reads of a VM's settings (src/heartbeat/machine/). */
const heartbeatSettings = {
  heartbeat_timeout: seconds(1).describe('No heartbeat for this long means the guest hangs: revert.').default(15),
  heartbeat_detector: z.enum(['fixed', 'adaptive']).describe('fixed: revert after heartbeat_timeout without a heartbeat. adaptive: learn the guest\'s rhythm (φ accrual) and revert when phi_threshold is reached, between adaptive_min_timeout and heartbeat_timeout. See docs/troubleshooting.md.').default('fixed'),
  phi_threshold: z.number().min(1).max(100).describe('adaptive: the suspicion level φ = -log10(P(a heartbeat this late)) that counts as a hang; 8 means one chance in 10^8 that the beat is still coming.').default(8),
  adaptive_min_timeout: seconds(1).describe('adaptive: never revert before this long without a heartbeat, however regular the guest (capped at heartbeat_timeout).').default(3),
  adaptive_learning: seconds(10).describe('adaptive: heartbeat_timeout applies until the detector has seen this many seconds of the guest\'s heartbeats (counted once per VM: what it learned is kept across reverts and restarts, in the state file). The default, a day, sees stalls that come a few times a day; a stall it has not seen is taken for a hang.').default(86400),
  startup_grace: seconds(0).describe('After the service or the VM starts, no revert for this long unless a heartbeat arrived.').default(60),
  post_revert_grace: seconds(1).describe('After a revert, wait at most this long for the first heartbeat; the first heartbeat ends the grace at once.').default(60),
  auto_revert_enabled: z.boolean().describe('false: watch and report, never revert on its own (as EVC).').default(true),
  max_reverts: count(1, 1000).describe('At most this many automatic reverts within revert_window; then escalate once (destroy, revert), then stop: exhausted.').default(5),
  revert_window: seconds(1, 7 * DAY_SECONDS).describe('The window for max_reverts.').default(3600),
  revert_retry_initial: seconds(0.1, 3600).describe('A failed revert is retried after this long, doubling each time.').default(5),
  revert_retry_max: seconds(1).describe('The longest wait between retries of a failed revert.').default(300)
}
export type HeartbeatSettings = Outputs<typeof heartbeatSettings>

/**
 * The one list of the settings each VM has, with their defaults. The top level holds the default
 * VM's values and the defaults for `vms`; VM_DEFAULTS, vmSchema and resolveVms derive from it.
 */
const vmSettings = {
  snapshot_name: snapshotNameSchema.describe('The snapshot a revert goes back to.').default('ready'),
  ...heartbeatSettings,
  keep_revisions: count(0, 100).describe('Creating the configured snapshot again makes a new revision (snapshot_name~STAMP) and keeps the newest this many older ones (only revisions are pruned, never a plain snapshot); 0: exhibition-vm-controller behaviour, the snapshot keeps its literal name and is replaced in place.').default(3),
  guest_addresses: z.array(z.string()).describe('Source addresses whose heartbeats belong to this VM, for old guest scripts that do not name their VM.').default([]),
  schedule: scheduleSchema.nullable().describe('Opening hours (closed: the VM is shut down, opening: reverted), closed dates, daily preventive revert. null: always open. See src/schedule/README.md.').default(null),
  screen: screenSchema.describe('Frozen-screen detection (off by default). A VM\'s own screen block replaces the top-level one as a whole. See src/screen/README.md.').prefault({})
}
export type VmSettings = Outputs<typeof vmSettings>

export const VM_SETTING_KEYS = Object.keys(vmSettings) as Array<keyof VmSettings>
export const VM_DEFAULTS: VmSettings = z.strictObject(vmSettings).parse({})

/** The same settings without their defaults: what a `vms` entry leaves unset comes from the top level. */
function withoutDefaults<S extends Record<string, { unwrap (): z.ZodType }>> (shape: S) {
  return Object.fromEntries(Object.entries(shape).map(([key, schema]) => [key, schema.unwrap()])) as
    { [K in keyof S]: ReturnType<S[K]['unwrap']> }
}

export const vmSchema = z.strictObject(withoutDefaults(vmSettings)).partial().extend({
  name: vmNameSchema.describe('The libvirt domain name.')
})

/**
 * libvirt's default NAT network, where a real host's guests are. Not loopback: a request from the
 * host itself is a technician's (EVC's web UI, curl), never held to guest limits. A guest on QEMU
 * user networking reaches the host from loopback: such a setup lists 127.0.0.0/8 (and ::1) itself.
 */
export const DEFAULT_GUEST_NETWORKS = ['192.168.122.0/24']

const networkSchema = z.string().refine(
  (s) => [z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()].some((f) => f.safeParse(s).success),
  'not an IP address or CIDR network (e.g. 192.168.122.0/24, ::1)'
)

export const securitySchema = z.strictObject({
  guest_networks: z.array(networkSchema).default(DEFAULT_GUEST_NETWORKS).describe('Source networks of the guests: their heartbeats and revert requests are held to guest rules (guest_revert_min_interval, max_reverts, maintenance). Loopback not listed here is the host: a technician (QEMU user networking: list 127.0.0.0/8 and ::1).'),
  admin_token: z.string().min(16, 'at least 16 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional().describe('Bearer token for admin endpoints. Unset: admin endpoints answer loopback only.'),
  admin_token_file: z.string().min(1).optional().describe('File holding the admin token (read at start; relative to the config file).'),
  allowed_hosts: z.array(hostSchema).default([]).describe('Host names (as in the browser\'s address bar, without port) by which this service is reached, besides IP addresses, localhost, this machine\'s name (NAME, NAME.local), api_host and admin_host. Requests trusted for their source address (loopback without a token, guest networks, open status) naming another Host are refused (403 HOST_NOT_ALLOWED): DNS rebinding protection. Example: [kiosk-host.museum.lan].'),
  read_requires_token: z.boolean().default(false).describe('true: status, events and metrics need the admin token too.'),
  guest_revert_min_interval: seconds(0).default(GUEST_REVERT_MIN_INTERVAL_DEFAULT).describe('A guest may ask for a revert at most once per this many seconds.'),
  rate_limit_guest: count(1, 1_000_000).default(600).describe('Guest requests per minute, per VM and client address; heartbeats over it are still counted (answered 429), revert requests over it are refused.'),
  rate_limit_admin: count(1, 1_000_000).default(60).describe('Admin requests per minute per client address.'),
  rate_limit_read: count(1, 1_000_000).default(600).describe('Read requests (status, events, metrics, dashboard) per minute per client address.'),
  admin_host: hostSchema.optional().describe('With admin_port: a second listener for admin endpoints; the main one then serves guest and read endpoints only.'),
  admin_port: z.int().min(0).max(65535).optional().describe('Port of the admin listener (see admin_host; default host 127.0.0.1).')
}).refine((s) => s.admin_token === undefined || s.admin_token_file === undefined, { message: 'set admin_token or admin_token_file, not both', path: ['admin_token_file'] })

export const ALERT_EVENTS = ['exhausted', 'revert_storm', 'recovered'] as const
export type AlertEvent = typeof ALERT_EVENTS[number]

export const alertsSchema = z.strictObject({
  webhooks: z.array(z.strictObject({
    url: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }).describe('Where to POST the alert (JSON).'),
    events: z.array(z.enum(ALERT_EVENTS)).min(1).default([...ALERT_EVENTS]).describe('Which events to send.'),
    timeout_seconds: z.number().positive().max(300).default(10).describe('Per attempt.'),
    retries: z.int().min(0).max(20).default(3).describe('Further attempts after a failure, with doubling backoff.'),
    headers: z.record(z.string(), z.string()).default({}).describe('Extra request headers (e.g. an Authorization the receiver wants).')
  })).default([]),
  queue_size: count(1, 100_000).default(100).describe('Alerts waiting to be sent; beyond this the oldest are dropped.')
})

export const configSchema = z.strictObject({
  libvirt_uri: z.string().min(1).default('test:///default').describe('libvirt connection URI: qemu:///system on a museum host; test:///default is libvirt\'s in-process test driver.'),
  vm_name: vmNameSchema.default('test').describe('The libvirt domain of the (default) exhibit VM.'),
  timezone: z.string().transform((zone) => zone === 'system' ? systemTimeZone() : zone)
    .refine(isValidTimeZone, 'not an IANA time zone (e.g. Europe/Berlin, UTC), nor "system"').prefault('system')
    .describe('The zone of opening hours and preventive reverts: an IANA name, or "system" (the host\'s zone).'),
  ...vmSettings,
  heartbeat_check_interval: seconds(0.05, 3600).default(5).describe('Safety-net poll of the VM state, in case a libvirt lifecycle event was missed. Deadlines use timers, not this poll.'),
  maintenance_minutes: z.number().min(1).max(MAINTENANCE_MAX_MINUTES, `at most ${MAINTENANCE_MAX_MINUTES} (a year)`).default(30).describe('Default length of maintenance (auto-revert off) when a technician does not give one.'),
  api_host: hostSchema.default('0.0.0.0').describe('Address the HTTP API listens on.'),
  api_port: z.int().min(0).max(65535).default(8000).describe('Port the HTTP API listens on.'),
  log_level: z.string().transform((s) => s.toLowerCase()).pipe(z.enum(['fatal', 'error', 'warn', 'warning', 'info', 'debug', 'trace', 'silent'])).transform((s) => s === 'warning' ? 'warn' : s).default('info').describe('pino log level (EVC\'s INFO, WARNING... are accepted).'),
  data_dir: z.string().min(1).default('./data').describe('Where persisted state and the audit trail live (systemd: /var/lib/kiosk-vm-watchdog).'),
  libvirt_keepalive_interval: count(0, 3600).default(5).describe('libvirt keepalive interval in seconds (0 disables); a dead libvirtd is noticed after interval × count.'),
  libvirt_keepalive_count: count(1, 100).default(3).describe('Keepalive messages without an answer before the connection is dropped.'),
  libvirt_reconnect_max: seconds(0.1, 3600).default(30).describe('Longest wait between reconnect attempts to libvirt.'),
  create_snapshot_if_missing: z.boolean().default(false).describe('At start, create the snapshot from the running VM when it does not exist (the quick start uses this on test:///default).'),
  vms: z.array(vmSchema).default([]).describe('More VMs on this host, each with its own settings (unset ones come from the top level).'),
  security: securitySchema.prefault({}).describe('Who may call what: guest networks, admin token, rate limits, admin listener.'),
  alerts: alertsSchema.prefault({}).describe('Technician alerts: webhooks called on exhausted, revert storm, recovered.'),
  // EVC keys with no use here: accepted so an EVC config keeps working.
  vm_startup_wait_interval: z.number().optional().describe('EVC key, ignored.'),
  vm_startup_max_attempts: z.number().optional().describe('EVC key, ignored.'),
  vm_startup_heartbeat_delay: z.number().max(DAY_SECONDS, `at most ${DAY_SECONDS} s`).optional().describe('EVC key: used as startup_grace when that is not set.'),
  api_reload: z.boolean().optional().describe('EVC key, ignored.'),
  log_format: z.string().optional().describe('EVC key, ignored: logs are JSON (pretty on a terminal).'),
  check_qemu_agent: z.boolean().optional().describe('EVC key, ignored.'),
  qemu_agent_timeout: z.number().optional().describe('EVC key, ignored.')
}).superRefine((config, ctx) => {
  const adminPort = config.security.admin_port
  if (adminPort !== undefined && adminPort !== 0 && adminPort === config.api_port) {
    ctx.addIssue({ code: 'custom', path: ['security', 'admin_port'], input: adminPort, message: `is the same as api_port (${config.api_port}): the admin listener needs a port of its own` })
  }
})

export type ConfigInput = z.input<typeof configSchema>
export type Config = z.output<typeof configSchema>

/** One VM's settings after defaults from the top level are applied. */
export type VmConfig = VmSettings & { name: string, heartbeat_check_interval: number }
