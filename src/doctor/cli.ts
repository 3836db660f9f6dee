// `kiosk-vm-watchdog doctor [--json]` and `check-config`: load the config (a bad one is the first
// failing check, not a crash), open libvirt without reconnecting, run the checks, print them.
import { ConfigError, EXIT_CONFIG, loadConfig, type LoadedConfig } from '../config/load.ts'
import { openHypervisor, type Hypervisor } from '../libvirt/index.ts'
import { formatResults, isCheckConfigId } from './run.ts'
import { runDoctor, type DoctorOptions } from './index.ts'

export interface DoctorCliOptions {
  /** The config file; null: defaults and the environment only. */
  file: string | null
  json?: boolean
  /** check-config: only the config, libvirt, domain and snapshot checks. */
  checkConfigOnly?: boolean
  write?: (text: string) => void
  env?: NodeJS.ProcessEnv
  /** For tests: the host and the clock. */
  host?: DoctorOptions['host']
  now?: () => number
}

/** Runs the doctor for the CLI; returns the exit code (0 all ok or warn, 1 a check failed, 78 config invalid for check-config). */
export async function doctorCli (options: DoctorCliOptions): Promise<number> {
  const write = options.write ?? ((text: string) => { process.stdout.write(text) })
  let loaded: LoadedConfig | null = null
  let configError: ConfigError | null = null
  try {
    loaded = loadConfig(options.file, options.env ?? process.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    configError = err
  }
  let hypervisor: Hypervisor | null = null
  try {
    if (loaded !== null) hypervisor = openHypervisor(loaded.config.libvirt_uri, { reconnect: false, keepaliveInterval: 0 })
    const report = await runDoctor({
      configFile: options.file,
      loaded,
      configError,
      hypervisor,
      ...(options.host ? { host: options.host } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.checkConfigOnly ? { only: isCheckConfigId } : {})
    })
    if (options.json) {
      write(JSON.stringify({ config: options.file, ...report }, null, 2) + '\n')
    } else {
      write(formatResults(report.checks) + '\n')
      if (!options.checkConfigOnly) write(`\n${report.counts.ok} ok, ${report.counts.warn} warn, ${report.counts.fail} fail\n`)
    }
    if (configError !== null && options.checkConfigOnly) return EXIT_CONFIG
    return report.ok ? 0 : 1
  } finally {
    await hypervisor?.close().catch(() => {})
  }
}
