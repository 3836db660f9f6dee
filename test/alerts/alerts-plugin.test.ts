// The alerts plugin end to end: a real watchdog (libvirt's test driver) whose guest never sends a
// heartbeat reverts, escalates and gives up; the webhook server on 127.0.0.1 receives
// revert_storm and exhausted, as JSON, without the watchdog waiting for it.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { AlertPayload } from '../../src/alerts/webhooks.ts'
import { build } from '../helpers/app.ts'

t.test('exhausted and revert_storm reach the webhook', async (t) => {
  const received: AlertPayload[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += String(c) })
    req.on('end', () => { received.push(JSON.parse(body) as AlertPayload); res.writeHead(204).end() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`

  const { app, run } = await build(t, {
    config: {
      startup_grace: 0,
      heartbeat_timeout: 1,
      post_revert_grace: 1,
      max_reverts: 1,
      revert_window: 3600,
      alerts: { webhooks: [{ url, events: ['exhausted', 'revert_storm'], timeout_seconds: 2, retries: 1 }] }
    }
  })
  const w = app.watchdogs.get('test')!
  await run(10_000, () => w.view().exhausted !== null)
  t.ok(w.view().exhausted, 'the watchdog gave up after the escalated revert')
  await app.alerts.idle()
  const events = received.map((a) => a.event)
  t.ok(events.includes('exhausted'), `exhausted was sent (got ${events.join(', ')})`)
  t.ok(events.includes('revert_storm'), 'revert_storm was sent')
  const exhausted = received.find((a) => a.event === 'exhausted')!
  t.match(exhausted, { service: 'kiosk-vm-watchdog', vm: 'test', reason: String, host: String, fields: Object })
  t.ok(!Number.isNaN(Date.parse(exhausted.at)), 'at is a timestamp')
  t.same(app.alerts.stats().map((s) => ({ delivered: s.delivered, failed: s.failed })), [{ delivered: received.length, failed: 0 }])
})

t.test('no webhooks configured: nothing is subscribed', async (t) => {
  const { app } = await build(t)
  t.equal(app.alerts.size, 0)
  t.equal(app.watchdogs.get('test')!.listenerCount('alert'), 0)
})
