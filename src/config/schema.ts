// The one schema of config.yaml. Key names follow exhibition-vm-controller (EVC) where it had
// them, so an EVC config file keeps working; the EVC keys we have no use for are accepted and
// ignored (listed in LEGACY_KEYS) rather than rejected. Unknown keys are errors: a typo in a
// ten-year exhibition's config must not silently fall back to a default.
import { z } from 'zod'
import { scheduleSchema } from '../schedule/config.ts'
import { isValidTimeZone, systemTimeZone } from '../schedule/zone.ts'
import { screenSchema } from '../screen/config.ts'

const seconds = (min: number) => z.number().min(min).describe('seconds')

/** VM names as libvirt accepts them, minus characters that would make URLs and logs ambiguous. */
export const vmNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/, 'letters, digits and _ . + - (max 64), starting with a letter or digit')
export const snapshotNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$/, 'letters, digits and _ . + - (max 100), starting with a letter or digit')

/** Settings that each VM has; the top level holds the default VM's values and the defaults for `vms`. */
const vmSettingsShape = {
  snapshot_name: snapshotNameSchema.describe('The snapshot a revert goes back to.'),
  heartbeat_timeout: seconds(1).describe('No heartbeat for this long means the guest hangs: revert.'),
  startup_grace: seconds(0).describe('After the service or the VM starts, no revert for this long unless a heartbeat arrived.'),
  post_revert_grace: seconds(1).describe('After a revert, wait at most this long for the first heartbeat; the first heartbeat ends the grace at once.'),
  auto_revert_enabled: z.boolean().describe('false: watch and report, never revert on its own (as EVC).'),
  max_reverts: z.int().min(1).describe('At most this many automatic reverts within revert_window; then escalate once (destroy, revert), then stop: exhausted.'),
  revert_window: seconds(1).describe('The window for max_reverts.'),
  revert_retry_initial: seconds(0.1).describe('A failed revert is retried after this long, doubling each time.'),
  revert_retry_max: seconds(1).describe('The longest wait between retries of a failed revert.'),
  keep_revisions: z.int().min(0).describe('Creating the snapshot again keeps the previous one as a timestamped revision; keep the newest this many.'),
  guest_addresses: z.array(z.string()).describe('Source addresses whose heartbeats belong to this VM, for old guest scripts that do not name their VM.'),
  schedule: scheduleSchema.nullable().describe('Opening hours (closed: the VM is shut down, opening: reverted), closed dates, daily preventive revert. null: always open. See src/schedule/README.md.'),
  screen: screenSchema.describe('Frozen-screen detection (off by default). A VM\'s own screen block replaces the top-level one as a whole. See src/screen/README.md.')
}

export const VM_DEFAULTS: { [K in keyof typeof vmSettingsShape]: z.output<typeof vmSettingsShape[K]> } = {
  snapshot_name: 'ready',
  heartbeat_timeout: 15,
  startup_grace: 60,
  post_revert_grace: 60,
  auto_revert_enabled: true,
  max_reverts: 5,
  revert_window: 3600,
  revert_retry_initial: 5,
  revert_retry_max: 300,
  keep_revisions: 3,
  guest_addresses: [],
  schedule: null,
  screen: screenSchema.parse({})
}

function withDefaults<S extends Record<string, z.ZodType>> (shape: S, defaults: { [K in keyof S]: z.output<S[K]> }) {
  return Object.fromEntries(Object.entries(shape).map(([key, schema]) => [key, schema.default(defaults[key] as never)])) as
    { [K in keyof S]: z.ZodDefault<S[K]> }
}

export const vmSchema = z.strictObject(vmSettingsShape).partial().extend({
  name: vmNameSchema.describe('The libvirt domain name.')
})

/** libvirt's default NAT subnet, QEMU user networking (guests appear as 10.0.2.x or as loopback), loopback. */
export const DEFAULT_GUEST_NETWORKS = ['192.168.122.0/24', '10.0.2.0/24', '127.0.0.0/8', '::1']

const networkSchema = z.string().refine(
  (s) => [z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()].some((f) => f.safeParse(s).success),
  'not an IP address or CIDR network (e.g. 192.168.122.0/24, ::1)'
)

export const securitySchema = z.strictObject({
  guest_networks: z.array(networkSchema).default(DEFAULT_GUEST_NETWORKS).describe('Source networks allowed to call guest endpoints (heartbeat, revert request).'),
  admin_token: z.string().min(16, 'at least 16 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional().describe('Bearer token for admin endpoints. Unset: admin endpoints answer loopback only.'),
  admin_token_file: z.string().min(1).optional().describe('File holding the admin token (read at start; relative to the config file).'),
  read_requires_token: z.boolean().default(false).describe('true: status, events and metrics need the admin token too.'),
  guest_revert_min_interval: seconds(0).default(60).describe('A guest may ask for a revert at most once per this many seconds.'),
  rate_limit_guest: z.int().min(1).default(600).describe('Guest requests per minute per client address.'),
  rate_limit_admin: z.int().min(1).default(60).describe('Admin requests per minute per client address.'),
  rate_limit_read: z.int().min(1).default(600).describe('Read requests (status, events, metrics, dashboard) per minute per client address.'),
  admin_host: z.string().min(1).optional().describe('With admin_port: a second listener for admin endpoints; the main one then serves guest and read endpoints only.'),
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
  queue_size: z.int().min(1).default(100).describe('Alerts waiting to be sent; beyond this the oldest are dropped.')
})

export const configSchema = z.strictObject({
  libvirt_uri: z.string().min(1).default('test:///default').describe('libvirt connection URI: qemu:///system on a museum host; test:///default is libvirt\'s in-process test driver.'),
  vm_name: vmNameSchema.default('test').describe('The libvirt domain of the (default) exhibit VM.'),
  timezone: z.string().transform((zone) => zone === 'system' ? systemTimeZone() : zone)
    .refine(isValidTimeZone, 'not an IANA time zone (e.g. Europe/Berlin, UTC), nor "system"').prefault('system')
    .describe('The zone of opening hours and preventive reverts: an IANA name, or "system" (the host\'s zone).'),
  ...withDefaults(vmSettingsShape, VM_DEFAULTS),
  heartbeat_check_interval: seconds(0.05).default(5).describe('Safety-net poll of the VM state, in case a libvirt lifecycle event was missed. Deadlines use timers, not this poll.'),
  maintenance_minutes: z.number().min(1).default(30).describe('Default length of maintenance (auto-revert off) when a technician does not give one.'),
  api_host: z.string().min(1).default('0.0.0.0').describe('Address the HTTP API listens on.'),
  api_port: z.int().min(0).max(65535).default(8000).describe('Port the HTTP API listens on.'),
  log_level: z.string().transform((s) => s.toLowerCase()).pipe(z.enum(['fatal', 'error', 'warn', 'warning', 'info', 'debug', 'trace', 'silent'])).transform((s) => s === 'warning' ? 'warn' : s).default('info').describe('pino log level (EVC\'s INFO, WARNING... are accepted).'),
  data_dir: z.string().min(1).default('./data').describe('Where persisted state and the audit trail live (systemd: /var/lib/kiosk-vm-watchdog).'),
  libvirt_keepalive_interval: z.int().min(0).default(5).describe('libvirt keepalive interval in seconds (0 disables); a dead libvirtd is noticed after interval × count.'),
  libvirt_keepalive_count: z.int().min(1).default(3).describe('Keepalive messages without an answer before the connection is dropped.'),
  libvirt_reconnect_max: seconds(0.1).default(30).describe('Longest wait between reconnect attempts to libvirt.'),
  create_snapshot_if_missing: z.boolean().default(false).describe('At start, create the snapshot from the running VM when it does not exist (the quick start uses this on test:///default).'),
  vms: z.array(vmSchema).default([]).describe('More VMs on this host, each with its own settings (unset ones come from the top level).'),
  security: securitySchema.prefault({}).describe('Who may call what: guest networks, admin token, rate limits, admin listener.'),
  alerts: alertsSchema.prefault({}).describe('Technician alerts: webhooks called on exhausted, revert storm, recovered.'),
  // EVC keys with no use here: accepted so an EVC config keeps working.
  vm_startup_wait_interval: z.number().optional().describe('EVC key, ignored.'),
  vm_startup_max_attempts: z.number().optional().describe('EVC key, ignored.'),
  vm_startup_heartbeat_delay: z.number().optional().describe('EVC key: used as startup_grace when that is not set.'),
  api_reload: z.boolean().optional().describe('EVC key, ignored.'),
  log_format: z.string().optional().describe('EVC key, ignored: logs are JSON (pretty on a terminal).'),
  check_qemu_agent: z.boolean().optional().describe('EVC key, ignored.'),
  qemu_agent_timeout: z.number().optional().describe('EVC key, ignored.')
})

export type ConfigInput = z.input<typeof configSchema>
export type Config = z.output<typeof configSchema>

/** One VM's settings after defaults from the top level are applied. */
export type VmConfig = typeof VM_DEFAULTS & { name: string, heartbeat_check_interval: number }
