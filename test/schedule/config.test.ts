// The schedule:, screen: and timezone keys through the real config loader: defaults, per-VM
// values, and errors that name the key path.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, EXIT_CONFIG, parseConfig } from '../../src/config/load.ts'
import { systemTimeZone } from '../../src/schedule/zone.ts'

function problems (raw: unknown): string[] {
  try {
    parseConfig(raw, {})
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

t.test('defaults: no schedule, screen detection off, the system zone', async (t) => {
  const { config, vms } = parseConfig({}, {})
  t.equal(config.timezone, systemTimeZone())
  t.equal(vms[0]!.schedule, null)
  t.same(vms[0]!.screen, { enabled: false, interval: 10, frozen_after: 120, min_change_percent: 0.5, error_images: [], error_match_threshold: 6 })
})

t.test('top-level values are the defaults of vms entries; an entry\'s own block replaces them', async (t) => {
  const { vms } = parseConfig({
    timezone: 'Europe/Berlin',
    schedule: { hours: { mon: '09:00-18:00', sun: 'closed', sat: null }, closed_dates: ['2026-12-24..2026-12-26'], preventive_revert: '06:30' },
    screen: { enabled: true, interval: 5 },
    vms: [{ name: 'second' }, { name: 'third', schedule: null, screen: { frozen_after: 300 } }]
  }, {})
  t.same(vms.map((v) => v.schedule?.preventive_revert ?? null), ['06:30', '06:30', null])
  t.same(vms.map((v) => [v.screen.enabled, v.screen.interval, v.screen.frozen_after]), [[true, 5, 120], [true, 5, 120], [false, 10, 300]])
})

t.test('errors name the key path and say what to write', async (t) => {
  t.match(problems({ timezone: 'Mars/Olympus' }), [/^timezone: not an IANA time zone/])
  t.equal(parseConfig({ timezone: 'system' }, {}).config.timezone, systemTimeZone(), '"system": the host\'s zone')
  t.equal(parseConfig({ timezone: 'America/New_York' }, {}).config.timezone, 'America/New_York')
  t.match(problems({ schedule: { hours: { mon: '9-18' } } }), [/^schedule\.hours\.mon: "9-18" is not a time range: write HH:MM-HH:MM/])
  t.match(problems({ schedule: { hours: { fri: '18:00-02:00' } } }), [/^schedule\.hours\.fri: .*ends before it starts.*18:00-24:00/])
  t.match(problems({ schedule: { hours: { monday: '09:00-18:00' } } }), [/^schedule\.hours\.monday: unknown key/])
  t.match(problems({ schedule: { hours: { tue: '09:00-25:00' } } }), [/^schedule\.hours\.tue:/])
  t.match(problems({ schedule: { closed_dates: ['2026-02-30'] } }), [/^schedule\.closed_dates\[0\]: "2026-02-30" is not a date/])
  t.match(problems({ schedule: { closed_dates: ['2026-12-26..2026-12-24'] } }), [/last day is before the first/])
  t.match(problems({ schedule: { preventive_revert: '6:30' } }), [/^schedule\.preventive_revert: "6:30" is not a time of day/])
  t.match(problems({ vms: [{ name: 'b', schedule: { hours: { wed: 'noon' } } }] }), [/^vms\[0\]\.schedule\.hours\.wed:/])
  t.match(problems({ schedule: { preventive_revert_cron: '0 3 * *' } }), [/^schedule\.preventive_revert_cron: "0 3 \* \*" is not a cron expression \(expected 5 or 6 fields but got 4\): write minute hour day-of-month month day-of-week/])
  t.match(problems({ vms: [{ name: 'b', schedule: { preventive_revert_cron: '0 24 * * *' } }] }), [/^vms\[0\]\.schedule\.preventive_revert_cron: .*hour: 24 is a invalid expression for hour/])
  t.match(problems({ schedule: { preventive_revert: '06:30', preventive_revert_cron: '0 3 * * *' } }), [/^schedule\.preventive_revert_cron: set preventive_revert \(HH:MM\) or preventive_revert_cron, not both/])
  t.equal(parseConfig({ schedule: { preventive_revert_cron: '0 3 * * *' } }, {}).vms[0]!.schedule?.preventive_revert_cron, '0 3 * * *')
  t.match(problems({ schedule: { preventive_revert_cron: '*/5 * * * *' } }), [/^schedule\.preventive_revert_cron: "\*\/5 \* \* \* \*" fires more than once an hour/], 'a revert every 5 minutes is refused')
  t.match(problems({ schedule: { preventive_revert_cron: '0,30 9 * * *' } }), [/fires more than once an hour/])
  t.equal(parseConfig({ schedule: { preventive_revert_cron: '0 * * * *' } }, {}).vms[0]!.schedule?.preventive_revert_cron, '0 * * * *', 'hourly is allowed')
  t.match(problems({ screen: { interval: 30, frozen_after: 40 } }), [/^screen\.frozen_after: frozen_after must be at least twice interval/])
  t.match(problems({ screen: { enable: true } }), [/^screen\.enable: unknown key/])
  t.match(problems({ screen: { interval: 0 } }), [/^screen\.interval:/])
})

t.test('a bad cron expression in a config file: check-config exits 78 naming the key path', async (t) => {
  const dir = t.testdir({ 'bad.yaml': "vm_name: test\nschedule:\n  preventive_revert_cron: '0 3 * * 8'\n" })
  const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
  const check = spawnSync(process.execPath, ['--import', 'tsx', cli, 'check-config', '--config', join(dir, 'bad.yaml')], { encoding: 'utf8', timeout: 20_000 })
  t.equal(check.status, EXIT_CONFIG)
  t.match(check.stdout + check.stderr, /schedule\.preventive_revert_cron: "0 3 \* \* 8" is not a cron expression \(dayOfWeek:/)
})
