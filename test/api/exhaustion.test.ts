// The revert loop limit end to end, on the fake clock, through the koffi binding on test:///default:
// a guest that never heartbeats is reverted, again, then once escalated (destroy + revert), then
// left alone ("exhausted") until a technician resets the watchdog.
import t from 'tap'
import type { AlertEvent } from '../../src/heartbeat/watchdog.ts'
import { build, assertError, call, events, until, GUEST } from './helpers.ts'

t.test('no heartbeats: revert, revert, escalate once, exhausted (and stays); reset watches again', async (t) => {
  const { app, lifecycle, clock, run } = await build(t, {
    config: { heartbeat_timeout: 2, startup_grace: 0, post_revert_grace: 2, max_reverts: 2, revert_window: 3600 }
  })
  const alerts: AlertEvent[] = []
  app.watchdogs.get('test')!.on('alert', (a) => alerts.push(a))
  const watchdog = async () => (await call(app, '/api/v1/status')).body.watchdog

  // Polled on the watchdog itself: 10 ms polls over HTTP would meet the read rate limit.
  const started = clock!.now()
  await run(20_000, () => app.watchdogs.get('test')!.view().state === 'exhausted')
  const exhausted = await watchdog()
  // startup grace (2 s) + two post-revert graces (2 s each) + the escalated revert's grace (2 s).
  t.equal(clock!.now() - started, 8000, 'exhausted after 8 s')

  const reverts = (await events(app, 'revert_started')).reverse()
  t.same(reverts.map((e) => e.reason), ['no_heartbeat_after_start', 'no_heartbeat_after_revert', 'no_heartbeat_after_revert'])
  t.same(reverts.map((e) => e.escalate), [false, false, true], 'the third one escalated')
  t.equal((await events(app, 'escalation')).length, 1, 'escalated once')
  const exhaustedEvents = await events(app, 'exhausted')
  t.equal(exhaustedEvents.length, 1)
  t.match(exhaustedEvents[0], { reason: 'no heartbeat within 2 s of the escalated revert' })
  t.match(exhausted, {
    state: 'exhausted',
    escalated: true,
    exhausted: { reason: 'no heartbeat within 2 s of the escalated revert' },
    counters: { reverts: 3, escalations: 1, exhaustions: 1 }
  })
  t.same(alerts.map((a) => a.kind), ['revert_storm', 'exhausted'], 'one storm alert, one exhausted alert')
  // The escalated revert destroyed the VM first.
  const testEvents = lifecycle.filter((e) => e.domain === 'test').map((e) => `${e.type}/${e.detailName}`)
  t.same(testEvents, [
    'stopped/from_snapshot', 'started/from_snapshot',
    'stopped/from_snapshot', 'started/from_snapshot',
    'stopped/destroyed', 'started/from_snapshot'
  ])

  // It stays exhausted: nothing more happens on its own, and the guest cannot ask.
  await run(60_000)
  t.equal((await watchdog()).state, 'exhausted', 'still exhausted a minute later')
  t.equal((await events(app, 'revert_started')).length, 3, 'no further revert')
  t.equal(lifecycle.filter((e) => e.domain === 'test').length, 6, 'libvirt saw nothing more')
  assertError(t, await call(app, { url: '/api/v1/revert/request?reason=idle', ...GUEST }), 409, 'CONFLICT', /reverts are exhausted/)

  // A technician resets: the watchdog watches again (and, with still no heartbeat, reverts).
  const reset = await call(app, { method: 'POST', url: '/api/v1/watchdog/reset' })
  t.equal(reset.status, 200)
  t.equal(reset.body.details.state, 'starting')
  const after = await watchdog()
  t.equal(after.exhausted, null)
  t.equal(after.escalated, false)
  t.equal(after.recent_reverts, 0, 'the loop count starts fresh')
  t.match((await events(app, 'exhausted_cleared'))[0], { reason: 'reset' })
  await run(2000, () => app.watchdogs.get('test')!.view().counters.reverts === 4)
  t.equal((await events(app, 'revert_started'))[0]!.escalate, false, 'an ordinary revert again')
  // The counter moves when the revert starts; a heartbeat ends the post-revert grace once the
  // revert has finished (one arriving mid-revert may come from the guest being replaced).
  await until('the revert finished', () => app.watchdogs.get('test')!.view().state === 'grace')
  t.equal((await call(app, '/api/v1/heartbeat')).body.details.state, 'healthy', 'the guest is back')
})
