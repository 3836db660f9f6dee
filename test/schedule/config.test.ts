// The schedule:, screen: and timezone keys through the real config loader: defaults, per-VM
// values, and errors that name the key path.
import t from 'tap'
import { ConfigError, parseConfig } from '../../src/config/load.ts'
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
  t.match(problems({ screen: { interval: 30, frozen_after: 40 } }), [/^screen\.frozen_after: frozen_after must be at least twice interval/])
  t.match(problems({ screen: { enable: true } }), [/^screen\.enable: unknown key/])
  t.match(problems({ screen: { interval: 0 } }), [/^screen\.interval:/])
})
