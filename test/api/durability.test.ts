// Issue 13, points 2 and 3, written as the faults: a full disk (a tiny tmpfs), `state/` that is a
// file, a damaged state file. A technician's change is answered 2xx only once it is on disk;
// otherwise 503 and the old setting stays in force and visible. What is reported is what happened.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync, closeSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { assertError, build, call, events, scratchDir } from './helpers.ts'

/** A 512 KiB tmpfs (a disk that can really be full, even for root); null when mounting is not allowed here. */
function tinyDisk (t: Test): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-full-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    rmSync(dir, { recursive: true, force: true })
    return null
  }
  t.teardown(() => {
    try { execFileSync('umount', ['-l', dir], { stdio: 'ignore' }) } catch {}
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** Fills the file system of `dir` to the last byte; returns the filler (delete it to free the disk). */
function fill (dir: string): string {
  const filler = join(dir, 'filler')
  const fd = openSync(filler, 'w')
  const chunk = Buffer.alloc(4096, 1)
  try {
    for (;;) writeSync(fd, chunk)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  }
  try {
    for (;;) writeSync(fd, chunk, 0, 1)
  } catch {}
  closeSync(fd)
  return filler
}

let requests = 0
let fiveHundreds = 0
let faults = 0
let lost = 0
async function req (app: Parameters<typeof call>[0], options: Parameters<typeof call>[1]): ReturnType<typeof call> {
  const r = await call(app, options)
  requests++
  if (r.status >= 500 && r.status !== 503) fiveHundreds++
  return r
}

t.test('full disk: disable is 503 STATE_NOT_SAVED, the old setting stays in force, visible and across a restart', async (t) => {
  const disk = tinyDisk(t)
  if (disk === null) {
    t.skip('the full-disk case: cannot mount a tmpfs here (not root?)', async () => {})
    return
  }
  const first = await build(t, { config: { data_dir: disk }, manualClose: true })
  const filler = fill(disk)
  faults++

  for (const url of ['/api/v1/revert/disable?indefinite=true', '/api/v1/revert/disable?minutes=30']) {
    const r = await req(first.app, { method: 'POST', url })
    assertError(t, r, 503, 'STATE_NOT_SAVED', /could not be saved .* not made: the previous setting stays in force/)
  }
  const status = (await req(first.app, '/api/v1/status')).body
  t.equal(status.auto_revert_enabled, true, 'the old setting stays in force')
  t.equal(status.watchdog.maintenance, null, 'and visible')
  t.match(status.saved_state.save_error, /disk full/, '/status says why')
  assertError(t, await req(first.app, { method: 'POST', url: '/api/v1/vm/stop' }), 503, 'STATE_NOT_SAVED')
  t.equal((await req(first.app, '/api/v1/status')).body.vm_state, 'running', 'a stop that cannot be saved is not done either')

  rmSync(filler)
  const ok = await req(first.app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' })
  t.equal(ok.status, 200, 'once there is room again, the same change is made')
  t.equal((await req(first.app, '/api/v1/status')).body.saved_state.save_error, null)
  fill(disk)
  faults++
  assertError(t, await req(first.app, { method: 'POST', url: '/api/v1/revert/enable' }), 503, 'STATE_NOT_SAVED')
  t.equal((await req(first.app, '/api/v1/status')).body.auto_revert_enabled, false, 'a failed enable leaves maintenance on')
  await first.app.close()

  const second = await build(t, { config: { data_dir: disk } })
  const after = (await req(second.app, '/api/v1/status')).body
  t.equal(after.watchdog.maintenance?.reason, 'technician', 'the acknowledged maintenance survived the restart')
  if (after.watchdog.maintenance?.reason !== 'technician') lost++
  t.equal(after.watchdog.maintenance?.until, null)
})

t.test('full disk: a snapshot create that worked answers 201 and says the audit entry is missing', async (t) => {
  const disk = tinyDisk(t)
  if (disk === null) {
    t.skip('the full-disk case: cannot mount a tmpfs here (not root?)', async () => {})
    return
  }
  const { app } = await build(t, { config: { data_dir: disk } })
  const before = (await req(app, '/api/v1/snapshots')).body.snapshots.length
  fill(disk)
  faults++
  const r = await req(app, { method: 'POST', url: '/api/v1/snapshot/create' })
  t.equal(r.status, 201, `created is created (${r.res.body})`)
  t.match(r.body.message, /created \(but: the audit trail could not be written \(ENOSPC\)\)/)
  t.match(r.body.details.warnings, [/audit trail/])
  t.equal((await req(app, '/api/v1/snapshots')).body.snapshots.length, before + 1, 'one request, one snapshot')
  const rollback = await req(app, { method: 'POST', url: '/api/v1/snapshot/rollback' })
  t.equal(rollback.status, 200, 'the rollback happened, so it is not a 500')
  t.match(rollback.body.message, /rolled back to .* \(but: the audit trail could not be written/)
  t.equal((await req(app, '/api/v1/snapshots')).body.snapshots.length, before)
})

t.test('state/ is a file: a warning at load, /status says so, changes are 503', async (t) => {
  const dataDir = scratchDir(t)
  writeFileSync(join(dataDir, 'state'), 'not a directory\n')
  faults++
  const lines: string[] = []
  const logger = (await import('pino')).pino({ level: 'warn' }, { write: (line: string) => { lines.push(line) } })
  const { app } = await build(t, { config: { data_dir: dataDir }, logger })
  t.ok(lines.some((l) => /the state directory is not usable/.test(l) && /not a directory/.test(l)), 'warned at load')
  const status = (await req(app, '/api/v1/status')).body
  t.equal(status.saved_state.loaded_from, 'none')
  t.match(status.saved_state.problem, /state: exists but is not a directory/)
  assertError(t, await req(app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' }), 503, 'STATE_NOT_SAVED')
  t.equal((await req(app, '/api/v1/status')).body.auto_revert_enabled, true)
  t.match(await events(app, 'change_not_saved'), [{ reason: 'maintenance_on' }], 'the audit trail records the refused change')
  t.match(await events(app, 'state_not_restored'), [{ reason: 'started_without_saved_state' }])
})

t.test('a damaged state file: the older backup is used and /status, the audit trail and the log say so', async (t) => {
  const dataDir = scratchDir(t)
  const first = await build(t, { config: { data_dir: dataDir }, manualClose: true })
  t.equal((await req(first.app, { method: 'POST', url: '/api/v1/revert/disable?indefinite=true' })).status, 200)
  t.equal((await req(first.app, { method: 'POST', url: '/api/v1/revert/enable' })).status, 200)
  await first.app.close()
  const file = join(dataDir, 'state', 'test.json')
  t.match(JSON.parse(readFileSync(`${file}.bak`, 'utf8')), { maintenance: { reason: 'technician' } }, 'the backup holds the older state')
  writeFileSync(file, '{"version": 1, "maint') // torn by a broken disk
  faults++

  const lines: string[] = []
  const logger = (await import('pino')).pino({ level: 'warn' }, { write: (line: string) => { lines.push(line) } })
  const second = await build(t, { config: { data_dir: dataDir }, logger })
  const status = (await req(second.app, '/api/v1/status')).body
  t.equal(status.saved_state.loaded_from, 'backup', '/status: an older state was restored')
  t.match(status.saved_state.problem, /test\.json: not JSON/)
  t.equal(status.watchdog.maintenance?.reason, 'technician', 'the older state is in force...')
  t.match(await events(second.app, 'state_not_restored'), [{ reason: 'restored_from_backup', problem: /not JSON/ }], '...and the audit trail says so')
  t.ok(lines.some((l) => /restored from the backup/.test(l)), 'and the log')
})

t.test('no state directory at all is a first start, not a problem', async (t) => {
  const dataDir = scratchDir(t)
  mkdirSync(join(dataDir, 'elsewhere'))
  const { app } = await build(t, { config: { data_dir: dataDir } })
  const status = (await req(app, '/api/v1/status')).body
  t.match(status.saved_state, { loaded_from: 'missing', problem: null, save_error: null })
  t.same(await events(app, 'state_not_restored'), [])
})

t.test('watchdog: a change whose save fails is not made; a heartbeat that came meanwhile is kept; a later change stands', async (t) => {
  const { parseConfig } = await import('../../src/config/load.ts')
  const { openHypervisor } = await import('../../src/libvirt/index.ts')
  const { newWatchdog } = await import('../helpers/watchdog.ts')
  const { FakeClock } = await import('../helpers/fake-clock.ts')
  const hypervisor = openHypervisor('test:///default', { reconnect: false })
  await hypervisor.connect()
  t.teardown(() => hypervisor.close())
  const clock = new FakeClock(Date.UTC(2026, 10, 23, 12))
  const saves: Array<{ reject: (err: Error) => void, resolve: () => void }> = []
  let held = true
  const audit: Array<Record<string, unknown>> = []
  const w = newWatchdog({
    vm: parseConfig({}, {}).vms[0]!,
    hypervisor,
    log: { debug () {}, info () {}, warn () {}, error () {} },
    clock,
    timers: clock,
    // Each save waits for the test to settle it, until `held` is switched off at the end.
    persistence: { load: async () => null, save: () => held ? new Promise<void>((resolve, reject) => { saves.push({ resolve, reject }) }) : Promise.resolve() },
    audit: { append: async (entry) => { audit.push(entry) } }
  })
  const started = w.start()
  await clock.flush()
  saves.shift()?.resolve() // the first save at start
  await started
  t.teardown(() => w.close())

  const change = w.setMaintenance(null, 'technician')
  await clock.flush()
  t.equal(w.view().maintenance, null, 'not in force before it is saved')
  clock.advance(100)
  w.heartbeat({ seq: 7 })
  faults++
  saves.shift()!.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }))
  await t.rejects(change, { code: 'STATE_NOT_SAVED', statusCode: 503 })
  t.equal(w.view().maintenance, null, 'not made: the old setting is in force')
  t.equal(w.view().lastSeq, 7, 'the heartbeat that came during the save is kept')
  t.match(audit.at(-1), { kind: 'change_not_saved', reason: 'maintenance_on' })

  const settleSaves = async () => { // saves the steps above queued (e.g. the heartbeat's) go through
    for (let i = 0; i < 3; i++) { while (saves.length > 0) saves.shift()!.resolve(); await clock.flush() }
  }
  await settleSaves()
  const stop = w.stopVm()
  await clock.flush()
  faults++
  saves.shift()!.reject(new Error('EROFS'))
  await t.rejects(stop, { code: 'STATE_NOT_SAVED' })
  t.match(await hypervisor.domainState('test'), { state: 'running' }, 'a stop that cannot be saved is not carried out')
  t.equal(w.view().maintenance, null)

  // A change that fails, then one that succeeds, both asked for while a save is under way: the
  // one acknowledged (200) is the one in force.
  await settleSaves()
  const first = w.setMaintenance(null, 'technician')
  const second = w.setMaintenance(30, 'technician')
  await clock.flush()
  faults++
  saves.shift()!.reject(new Error('EIO'))
  await t.rejects(first, { code: 'STATE_NOT_SAVED' })
  await clock.flush()
  saves.shift()!.resolve()
  await second
  t.match(w.view().maintenance, { reason: 'technician', until: clock.now() + 30 * 60_000 }, 'the acknowledged 30 minutes are in force, not the refused indefinite one')

  held = false
  while (saves.length > 0) saves.shift()!.resolve()
})

t.test('over all the faults above: no 5xx but the 503 that says so, no acknowledged setting lost', async (t) => {
  t.comment(`durability: requests ${requests}, 5xx other than 503: ${fiveHundreds}, faults injected ${faults}, settings lost ${lost}`)
  t.equal(fiveHundreds, 0)
  t.equal(lost, 0)
})
