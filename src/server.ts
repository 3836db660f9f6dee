// The only place that reads the config file, creates the logger, listens and handles signals.
// On SIGTERM/SIGINT the app closes gracefully and the VM is left running: restarting the
// service must never interrupt the exhibit.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, EXIT_CONFIG, loadConfig } from './config/load.ts'
import { openHypervisor } from './libvirt/index.ts'
import { createLogger } from './logger.ts'
import { VERSION } from './version.ts'

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
  const app = await buildApp({ config: loaded, hypervisor, logger: log })

  closeWithGrace({ delay: 15_000, logger: log }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'stopping after an unexpected error')
    else log.info({ signal }, 'stopping; the VM is left as it is')
    await app.close()
  })

  await app.listen({ host: config.api_host, port: config.api_port })
}
