// `serve`: reads the config file (as the doctor CLI does too), creates the logger, listens, talks
// to systemd and handles signals. On SIGTERM/SIGINT the app closes gracefully and the VM is left
// running: restarting the service must never interrupt the exhibit.
import { createServer } from 'node:net'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { type CodeCache, scheduleCodeCacheSave, startedCodeCache } from './code-cache.ts'
import type { Logger } from 'pino'
import { ConfigError, EXIT_CONFIG, loadConfig, type LoadedConfig } from './config/load.ts'
import { applyReload, planReload } from './config/reload.ts'
import { openHypervisor, type Hypervisor } from './libvirt/index.ts'
import { createLogger, forJournal, isJournalStream } from './logger.ts'
import { createNotifier, type Notifier } from './systemd/notify.ts'
import { statusLine, statusUpdater } from './systemd/status.ts'
import { DataDirLockedError, lockDataDir, type DataDirLock } from './store/lock.ts'
import { VERSION } from './version.ts'

/** Exit code when another instance holds the data directory (EX_CANTCREAT: the lock file). */
export const EXIT_LOCKED = 73
/** Exit code when the API or admin port is taken (EX_UNAVAILABLE). */
export const EXIT_PORT_IN_USE = 69

export async function serve (configFile: string | null, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let loaded
  try {
    loaded = loadConfig(configFile, env)
  } catch (err) {
    if (err instanceof ConfigError) {
      // <3> (err) in front of each line when stderr goes to journald: `journalctl -p err` shows why.
      process.stderr.write(forJournal(`kiosk-vm-watchdog: invalid configuration\n${err.message}\n`, 3, isJournalStream(2)))
      process.exit(EXIT_CONFIG)
    }
    throw err
  }
  const { config } = loaded
  const log = createLogger(config.log_level)
  const loggers = trackChildLoggers(log)
  // SIGUSR1 would open Node's inspector on 127.0.0.1:9229 (anyone on the host could then run
  // code as this service): a listener of our own replaces that, and does nothing.
  process.on('SIGUSR1', () => log.info({ signal: 'SIGUSR1' }, 'SIGUSR1 ignored'))
  // SIGHUP reloads the config; one that comes while the service is still starting would end the
  // process (Node's default), so it is kept and the reload runs once the service listens.
  let reloadNow: (() => void) | null = null
  let reloadPending = false
  process.on('SIGHUP', () => {
    if (reloadNow !== null) return reloadNow()
    reloadPending = true
    log.info({ signal: 'SIGHUP' }, 'SIGHUP while starting: the config is read again once the service listens')
  })
  const codeCache = startedCodeCache()
  log.info({ version: VERSION, configFile: loaded.file, vms: loaded.vms.map((v) => v.name), libvirt: config.libvirt_uri, codeCache: codeCache?.state ?? 'off' }, 'starting')
  if (codeCache?.problem != null) log.warn({ file: codeCache.file }, `code cache: ${codeCache.problem}`)
  for (const warning of loaded.warnings) log.warn({ configFile: loaded.file }, `config: ${warning}`)

  // Before anything touches libvirt or the data directory: one instance per data directory, and
  // the ports free (a second instance must not start a watchdog or create a snapshot, then die).
  let lock: DataDirLock
  try {
    lock = await lockDataDir(config.data_dir)
  } catch (err) {
    const message = err instanceof DataDirLockedError ? err.message : `cannot lock the data directory ${config.data_dir}: ${(err as Error).message}`
    log.fatal({ dataDir: config.data_dir, ...(err instanceof DataDirLockedError ? { pid: err.pid } : {}) }, message)
    process.stderr.write(forJournal(`kiosk-vm-watchdog: ${message}\n`, 3, isJournalStream(2)))
    process.exit(EXIT_LOCKED)
  }
  const taken = await portTaken(config.api_host, config.api_port) ??
    (config.security.admin_port === undefined ? null : await portTaken(config.security.admin_host ?? '127.0.0.1', config.security.admin_port))
  if (taken !== null) {
    log.fatal({ problem: taken }, 'cannot start: a port is in use')
    process.stderr.write(forJournal(`kiosk-vm-watchdog: cannot start: ${taken}\n`, 3, isJournalStream(2)))
    await lock.release()
    process.exit(EXIT_PORT_IN_USE)
  }

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
    await listen(app, notifier, hypervisor, lock, codeCache)
    const running = app
    reloadNow = () => { reload(running, configFile, env, loggers) }
    if (reloadPending) reloadNow()
  } catch (err) {
    // Close what was opened (libvirt's event thread keeps a process alive), then fail: systemd
    // restarts us, or the technician reads the reason on the terminal.
    log.fatal({ err }, 'cannot start')
    await app?.close().catch(() => {})
    await hypervisor.close()
    await lock.release()
    throw err
  }
}

/**
 * SIGHUP: reads the config file again. What can change in place changes (log_level,
 * maintenance_minutes); every other changed key is named in a warning (it needs a restart). An
 * invalid file changes nothing: the running config stays, and the log says why.
 */
function reload (app: Awaited<ReturnType<typeof buildApp>>, configFile: string | null, env: NodeJS.ProcessEnv, loggers: ChildLoggers): void {
  let next: LoadedConfig
  try {
    next = loadConfig(configFile, env)
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message]
    app.log.error({ configFile, problems }, `reload refused: the config is not valid (${problems.join('; ')}); the running config stays`)
    return
  }
  const plan = planReload(app.config, next)
  applyReload(app.config, next, plan)
  if (plan.apply.includes('log_level')) loggers.setLevel(next.config.log_level)
  app.log.info({ configFile, applied: plan.apply }, plan.apply.length > 0 ? `config reloaded: ${plan.apply.join(', ')} changed` : 'config reloaded: nothing that can change in place changed')
  if (plan.restart.length > 0) {
    app.log.warn({ configFile, keys: plan.restart }, `config reloaded, but these settings change only with a restart (systemctl restart kiosk-vm-watchdog): ${plan.restart.join(', ')}`)
  }
}

interface ChildLoggers { setLevel (level: string): void }

/** pino children keep the level they were made with: remember them (weakly) so a reload can change it everywhere. */
function trackChildLoggers (root: Logger): ChildLoggers {
  let children: Array<WeakRef<Logger>> = []
  let pruneAt = 1024
  const track = (child: Logger): void => {
    children.push(new WeakRef(child))
    if (children.length >= pruneAt) {
      children = children.filter((ref) => ref.deref() !== undefined)
      pruneAt = Math.max(1024, children.length * 2)
    }
  }
  root.onChild = track
  return {
    setLevel (level) {
      root.level = level
      for (const ref of children) {
        const child = ref.deref()
        if (child !== undefined) child.level = level
      }
    }
  }
}

/** Why `host:port` cannot be listened on (in use, no such address), or null when it can. */
function portTaken (host: string, port: number): Promise<string | null> {
  if (port === 0) return Promise.resolve(null)
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', (err: NodeJS.ErrnoException) => {
      resolve(err.code === 'EADDRINUSE'
        ? `${host}:${port} is already in use (another kiosk-vm-watchdog, or another service: \`ss -ltnp 'sport = :${port}'\` names it)`
        : `cannot listen on ${host}:${port}: ${err.code ?? err.message}`)
    })
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)))
  })
}

async function listen (app: Awaited<ReturnType<typeof buildApp>>, notifier: Notifier, hypervisor: Hypervisor, lock: DataDirLock, codeCache: CodeCache | undefined): Promise<void> {
  const { config } = app.config
  await app.listen({ host: config.api_host, port: config.api_port })
  if (config.security.admin_port !== undefined) await app.listenAdmin()
  const cancelCacheSave = codeCache === undefined ? () => {} : scheduleCodeCacheSave(codeCache, app.timers, app.log, CODE_CACHE_SAVE_AFTER_MS)

  // systemd's watchdog: pinged from the event loop, so a hung process stops pinging and is
  // restarted; so is one whose libvirt action hangs (a revert stuck for minutes blocks every
  // VM's queue). libvirt being down is not a reason to withhold pings: the binding reconnects.
  const stopPings = notifier.startWatchdog(() => noActionStuck(app))
  // Only once up: close-with-grace also exits 0 on 'beforeExit', which would hide a failed start.
  // SIGHUP reloads the config (see reload()), it does not stop the service.
  closeWithGrace({ delay: 15_000, logger: app.log, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'stopping after an unexpected error')
    else app.log.info({ signal }, 'stopping; the VM is left as it is')
    stopPings()
    cancelCacheSave()
    status.close()
    notifier.stopping()
    await app.close()
    await lock.release()
  })
  // READY=1 as soon as the API listens, libvirt or not (the service waits for libvirt by
  // itself, and reverts nothing before it answered); STATUS= follows every change after that.
  const listening = `listening on ${config.api_host}:${config.api_port}`
  let everConnected = hypervisor.connected
  const status = statusUpdater(notifier, () => statusLine({
    listening, uri: hypervisor.uri, connected: hypervisor.connected, everConnected, views: [...app.watchdogs.values()].map((w) => w.view())
  }), app.timers)
  hypervisor.onConnection((event) => {
    if (event.type === 'connected') everConnected = true
    status.updateSoon()
  })
  // The line walks every VM: coalesced, so N VMs changing at once cost one line, not N (issue 15).
  for (const watchdog of app.watchdogs.values()) watchdog.on('change', () => status.updateSoon())
  status.ready()
}

/** After the start, so what was compiled while starting is in the code cache; long before a restart. */
const CODE_CACHE_SAVE_AFTER_MS = 3000

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
