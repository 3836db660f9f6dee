// The state-change history (src/availability/history.ts) and the service around it
// (service.ts): bounded files, damaged lines, a restart after a crash, changes recorded once,
// the downtime counter that never goes down. Fake clock, scratch directories, no Fastify.
import t from 'tap'
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { historyPath, StateHistory } from '../../src/availability/history.ts'
import { AvailabilityService, type ObservedView } from '../../src/availability/service.ts'
import { silentLog } from '../../src/ports/index.ts'
import { FakeClock } from '../helpers/fake-clock.ts'
import { scratchDir } from '../helpers/scratch.ts'

const T0 = Date.UTC(2026, 10, 23, 12)

t.test('appends survive a reload; the files stay within their bound; memory holds what they hold', async (t) => {
  const dir = scratchDir(t)
  const path = historyPath(dir, 'vm1')
  const h = new StateHistory({ path, log: silentLog, maxBytes: 1000 })
  await h.load()
  for (let i = 0; i < 200; i++) h.append({ at: T0 + i * 1000, status: i % 2 === 0 ? 'healthy' : 'late', reason: null, source: null }).catch(() => {})
  await h.flush()
  t.ok(statSync(path).size <= 1000, `current file within maxBytes (${statSync(path).size})`)
  t.ok(statSync(`${path}.1`).size <= 1000, 'one rotated file within maxBytes')
  t.notOk(existsSync(`${path}.2`), 'no more than one old file')
  const lines = (p: string) => readFileSync(p, 'utf8').trim().split('\n').length
  const onDisk = lines(`${path}.1`) + lines(path)
  t.equal(h.records.length, onDisk, 'memory holds exactly what the files hold')
  t.equal(h.records.at(-1)!.at, T0 + 199_000, 'the newest record is kept')

  const again = new StateHistory({ path, log: silentLog, maxBytes: 1000 })
  await again.load()
  t.same(again.records, h.records, 'a reload reads the same records')
})

t.test('a failed write leaves memory as the files are, across later rotations and a line cut short', async (t) => {
  const dir = scratchDir(t)
  const path = historyPath(dir, 'vm1')
  const errors: string[] = []
  const h = new StateHistory({ path, log: { ...silentLog, error: (_o, msg) => { errors.push(msg) } }, maxBytes: 1000 })
  await h.load()
  const at = (i: number) => T0 + i * 1000
  const add = (i: number) => h.append({ at: at(i), status: i % 2 === 0 ? 'healthy' : 'late', reason: null, source: null })
  const reload = async () => {
    const again = new StateHistory({ path, log: silentLog, maxBytes: 1000 })
    await again.load()
    return again.records
  }
  for (let i = 0; i < 3; i++) await add(i)
  // The file cannot be written: a directory stands where it was.
  renameSync(path, `${path}.saved`)
  mkdirSync(path)
  await add(3)
  t.match(h.lastError, /EISDIR/)
  t.same(errors, ['cannot write the state history; the change is not recorded'])
  t.equal(h.last!.at, at(2), 'the record that did not reach the file left memory')
  // The file is back, with part of a line at its end (what a write cut short leaves).
  rmdirSync(path)
  renameSync(`${path}.saved`, path)
  appendFileSync(path, '{"ts":"2026-11-23T12:00:03.000Z","at":17')
  await add(4)
  t.equal(h.lastError, null)
  t.same(await reload(), h.records, 'the next record is read back: it started on a line of its own')
  t.same(h.records.map((r) => r.at), [0, 1, 2, 4].map(at))
  // Rotations afterwards drop exactly the records of the dropped file.
  for (let i = 5; i < 200; i++) add(i).catch(() => {})
  await h.flush()
  t.ok(existsSync(`${path}.1`), 'rotated')
  t.ok(statSync(path).size <= 1000 && statSync(`${path}.1`).size <= 1000, 'both files within maxBytes')
  t.same(await reload(), h.records, 'memory holds exactly what the files hold')
  t.equal(h.records.at(-1)!.at, at(199))
})

t.test('a damaged line is skipped; time never runs backwards', async (t) => {
  const dir = scratchDir(t)
  const path = historyPath(dir, 'vm1')
  mkdirSync(join(dir, 'history'))
  writeFileSync(path, JSON.stringify({ at: T0, status: 'healthy' }) + '\n{"at": broken\n' + JSON.stringify({ at: T0 + 5, status: 'no-such-state' }) + '\n')
  appendFileSync(path, JSON.stringify({ at: T0 + 10, status: 'late', reason: 7 }) + '\n')
  const warnings: string[] = []
  const h = new StateHistory({ path, log: { ...silentLog, warn: (_o, msg) => { warnings.push(msg) } } })
  await h.load()
  t.same(h.records, [{ at: T0, status: 'healthy', reason: null, source: null }, { at: T0 + 10, status: 'late', reason: null, source: null }])
  t.same(warnings, ['state history: damaged lines skipped'])
  await h.append({ at: T0 - 60_000, status: 'healthy', reason: null, source: null })
  t.equal(h.last!.at, T0 + 10, 'a clock stepped back does not reorder the history')
})

function view (state: string, extra: Partial<ObservedView> = {}): ObservedView {
  return { state, maintenance: null, revert: null, lastRevert: null, exhausted: null, ...extra }
}

t.test('the service: changes recorded once, a crash is unmonitored time, the counter never goes down', async (t) => {
  const dir = scratchDir(t)
  const clock = new FakeClock(T0)
  // The first service's timers die with it (a crash): nothing of it runs after that.
  let crashed = false
  const dying = { setTimeout: (fn: () => void, ms: number) => clock.setTimeout(() => { if (!crashed) fn() }, ms), clearTimeout: clock.clearTimeout }
  const make = (timers = dying) => new AvailabilityService({ dataDir: dir, vms: [{ name: 'vm1', schedule: null }], timezone: 'UTC', clock, timers, log: silentLog })
  const a = make()
  await a.load()
  a.observe('vm1', view('healthy'))
  clock.advance(30_000)
  a.observe('vm1', view('healthy')) // a change event that changed nothing recorded
  t.equal(a.history('vm1').records.length, 1, 'the same state is not recorded twice')
  clock.advance(90_000) // the stamp is rewritten every minute
  a.observe('vm1', view('late'))
  clock.advance(5000)
  let lost = a.lostSinceStart('vm1')
  t.equal(lost.hang, 0, 'late, still undecided: not counted yet')
  a.observe('vm1', view('reverting', { revert: { reason: 'heartbeat_timeout', source: 'auto' } }))
  clock.advance(10_000)
  lost = a.lostSinceStart('vm1')
  t.equal(lost.hang, 15_000, 'decided: the late stretch and the revert so far')
  a.observe('vm1', view('healthy'))
  clock.advance(60_000)
  t.equal(a.lostSinceStart('vm1').hang, 15_000, 'healthy time adds nothing')
  await a.settled()
  const crashedAt = clock.now()
  t.equal(clock.pending, 1, 'one timer: the stamp')
  crashed = true // no stop(): the process dies here

  clock.advance(3_600_000)
  const b = make(clock)
  await b.load()
  b.observe('vm1', view('starting'))
  const records = b.history('vm1').records
  const stampAt = T0 + 180_000 // the last whole minute before the crash
  t.same(records.slice(-2).map((r) => [r.at, r.status, r.reason]), [[stampAt, 'unmonitored', 'service_crashed'], [crashedAt + 3_600_000, 'starting', null]],
    'from the last stamp until the restart: unmonitored')
  const f = b.report('vm1', T0, clock.now())
  t.equal(f.lostMs.unmonitored, clock.now() - stampAt)
  t.equal(f.lostMs.hang, 15_000)
  await b.stop()
  t.equal(clock.pending, 0, 'stop() clears the stamp timer')
  t.equal(b.history('vm1').last!.status, 'unmonitored', 'a clean stop is recorded')
})

t.test('today and this week start at local midnight and Monday 00:00, DST included', async (t) => {
  const at = (iso: string) => Date.parse(iso)
  const starts = (now: string, timezone: string) => {
    const clock = new FakeClock(at(now))
    const s = new AvailabilityService({ dataDir: scratchDir(t), vms: [], timezone, clock, timers: clock, log: silentLog }).windowStarts()
    return { today: new Date(s.today).toISOString(), week: new Date(s.week).toISOString() }
  }
  t.same(starts('2026-10-25T11:00:00Z', 'Europe/Berlin'), { today: '2026-10-24T22:00:00.000Z', week: '2026-10-18T22:00:00.000Z' }, 'fall-back Sunday: midnight was still summer time')
  t.same(starts('2026-10-26T10:00:00Z', 'Europe/Berlin'), { today: '2026-10-25T23:00:00.000Z', week: '2026-10-25T23:00:00.000Z' }, 'the Monday after: winter time')
  t.same(starts('2026-03-29T10:00:00Z', 'Europe/Berlin'), { today: '2026-03-28T23:00:00.000Z', week: '2026-03-22T23:00:00.000Z' }, 'spring-forward Sunday')
  t.same(starts('2026-11-23T00:30:00Z', 'UTC'), { today: '2026-11-23T00:00:00.000Z', week: '2026-11-23T00:00:00.000Z' })
})
