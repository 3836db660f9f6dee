// The only place that reads the config file, creates the logger, listens, talks to systemd and
// handles signals. On SIGTERM/SIGINT the app closes gracefully and the VM is left running:
// restarting the service must never interrupt the exhibit.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, EXIT_CONFIG, loadConfig } from './config/load.ts'
import { openHypervisor, type Hypervisor } from './libvirt/index.ts'
import { createLogger } from './logger.ts'
import { createNotifier, type Notifier } from './systemd/notify.ts'
import { VERSION } from './version.ts'

/** How long READY=1 waits for libvirt; past it systemd hears "ready, waiting for libvirt". */
const READY_WAIT_FOR_LIBVIRT_MS = 90_000

export async function serve (configFile: string | null, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let loaded
  try {
    loaded = loadConfig(configFile, env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kiosk-vm-watchdog: invalid configuration\n${err.message}\n`)
      process.exit(EXIT_CONFIG)
    }
    throw err
  }
  const { config } = loaded
  const log = createLogger(config.log_level)
  log.info({ version: VERSION, configFile: loaded.file, vms: loaded.vms.map((v) => v.name), libvirt: config.libvirt_uri }, 'starting')

  const hypervisor = openHypervisor(config.libvirt_uri, {
    keepaliveInterval: config.libvirt_keepalive_interval,
    keepaliveCount: config.libvirt_keepalive_count,
    reconnectMaxMs: config.libvirt_reconnect_max * 1000,
    log: log.child({ component: 'libvirt' })
  })
  const notifier = createNotifier(log.child({ component: 'systemd' }))
  let app: Awaited<ReturnType<typeof buildApp>> | null = null
  try {
    app = await buildApp({ config: loaded, hypervisor, logger: log })
    await listen(app, notifier, hypervisor)
  } catch (err) {
    // Close what was opened (libvirt's event thread keeps a process alive), then fail: systemd
    // restarts us, or the technician reads the reason on the terminal.
    log.fatal({ err }, 'cannot start')
    await app?.close().catch(() => {})
    await hypervisor.close()
    throw err
  }
}

async function listen (app: Awaited<ReturnType<typeof buildApp>>, notifier: Notifier, hypervisor: Hypervisor): Promise<void> {
  const { config } = app.config
  await app.listen({ host: config.api_host, port: config.api_port })
  if (config.security.admin_port !== undefined) await app.listenAdmin()

  // systemd's watchdog: pinged from the event loop, so a hung process stops pinging and is
  // restarted; so is one whose libvirt action hangs (a revert stuck for minutes blocks every
  // VM's queue). libvirt being down is not a reason to withhold pings: the binding reconnects.
  const stopPings = notifier.startWatchdog(() => noActionStuck(app))
  // Only once up: close-with-grace also exits 0 on 'beforeExit', which would hide a failed start.
  closeWithGrace({ delay: 15_000, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'stopping after an unexpected error')
    else app.log.info({ signal }, 'stopping; the VM is left as it is')
    stopPings()
    notifier.stopping()
    await app.close()
  })
  announceReady(notifier, hypervisor, `listening on ${config.api_host}:${config.api_port}`).catch((err: unknown) => app.log.warn({ err }, 'cannot notify systemd'))
}

/** A revert running this long is stuck (a normal one takes seconds, even on TCG). */
const STUCK_ACTION_MS = 10 * 60_000

function noActionStuck (app: Awaited<ReturnType<typeof buildApp>>): boolean {
  const now = app.clock.now()
  for (const watchdog of app.watchdogs.values()) {
    const view = watchdog.view()
    if (view.revertInFlight && view.revert !== null && now - view.revert.startedAt > STUCK_ACTION_MS) return false
  }
  return true
}

/** READY=1 once the API listens and libvirt is connected (or after a bounded wait for libvirt). */
async function announceReady (notifier: Notifier, hypervisor: Hypervisor, listening: string): Promise<void> {
  if (!hypervisor.connected) {
    notifier.status(`${listening}; waiting for libvirt at ${hypervisor.uri}`)
    let off = () => {}
    const connected = new Promise<void>((resolve) => {
      off = hypervisor.onConnection((event) => { if (event.type === 'connected') resolve() })
    })
    await Promise.race([connected, sleep(READY_WAIT_FOR_LIBVIRT_MS)])
    off()
  }
  const libvirt = hypervisor.connected ? `libvirt ${hypervisor.uri} connected` : `libvirt ${hypervisor.uri} not reachable yet (retrying)`
  notifier.ready(`${listening}; ${libvirt}`)
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
