// Technician alerts: the watchdogs' `alert` events (exhausted, revert_storm, recovered) go to
// the webhooks in `alerts.webhooks`. Sending is queued (src/alerts/webhooks.ts), so a watchdog
// never waits for a receiver.
import { hostname } from 'node:os'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { WebhookNotifier } from '../alerts/webhooks.ts'
import { watchedVms, type AlertEvent } from './observe.ts'

declare module 'fastify' {
  interface FastifyInstance {
    alerts: WebhookNotifier
  }
}

export interface AlertsPluginOptions {
  /** First wait before a retry, doubling (default 1000 ms); tests shorten it. */
  retryDelayMs?: number
}

export default fp<AlertsPluginOptions>(async function alertsPlugin (app: FastifyInstance, options) {
  const { webhooks, queue_size: queueSize } = app.config.config.alerts
  const notifier = new WebhookNotifier({
    webhooks,
    queueSize,
    log: app.log.child({ component: 'alerts' }),
    timers: app.timers,
    clock: app.clock,
    ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {})
  })
  app.decorate('alerts', notifier)
  const host = hostname()
  const unsubscribe: Array<() => void> = []

  app.addHook('onReady', async () => {
    if (notifier.size === 0) return
    for (const w of watchedVms(app).values()) {
      const onAlert = (event: AlertEvent) => {
        notifier.notify({
          service: 'kiosk-vm-watchdog',
          event: event.kind,
          vm: event.vm,
          reason: event.reason,
          at: new Date(app.clock.now()).toISOString(),
          host,
          fields: event.fields
        })
      }
      w.on('alert', onAlert)
      unsubscribe.push(() => w.off('alert', onAlert))
    }
  })
  app.addHook('onClose', async () => {
    for (const u of unsubscribe.splice(0)) u()
    // Give what is queued a moment (a stop often follows an alert-worthy event), then stop.
    await Promise.race([notifier.idle(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    await notifier.close()
  })
}, { name: 'alerts', fastify: '5.x', dependencies: ['vms'] })
