#!/usr/bin/env node
// kiosk-vm-watchdog [serve|check-config] [--config FILE]
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { checkLibvirt, formatResults } from './check.ts'
import { ConfigError, configPath, EXIT_CONFIG, loadConfig } from './config/load.ts'
import { openHypervisor } from './libvirt/index.ts'
import { serve } from './server.ts'

const USAGE = `usage: kiosk-vm-watchdog [command] [--config FILE]

commands:
  serve          run the watchdog and its HTTP API (default)
  check-config   validate the config file and the libvirt side (domain, snapshot), then exit

The config file is --config FILE, else $KVW_CONFIG, else ./config.yaml (defaults apply when
that file does not exist).`

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, check: { type: 'boolean' } }
  })
  const command = values.check ? 'check-config' : (positionals[0] ?? 'serve')
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const file = resolveConfigFile(values.config)
  switch (command) {
    case 'serve':
      await serve(file)
      return -1 // keeps running
    case 'check-config':
      return await checkConfig(file)
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`)
      return 64
  }
}

/** An explicitly named file must exist; the default ./config.yaml may be absent (defaults apply). */
function resolveConfigFile (flag: string | undefined): string | null {
  const path = configPath(flag, process.env)
  const explicit = flag !== undefined || process.env['KVW_CONFIG'] !== undefined
  return explicit || existsSync(path) ? path : null
}

async function checkConfig (file: string | null): Promise<number> {
  let loaded
  try {
    loaded = loadConfig(file)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stdout.write(`fail config: ${err.message}\n`)
      return EXIT_CONFIG
    }
    throw err
  }
  process.stdout.write(`ok   config ${loaded.file ?? '(defaults)'} is valid (${loaded.vms.length} VM${loaded.vms.length > 1 ? 's' : ''})\n`)
  const hypervisor = openHypervisor(loaded.config.libvirt_uri, { reconnect: false })
  try {
    const results = await checkLibvirt(loaded, hypervisor)
    process.stdout.write(formatResults(results) + '\n')
    return results.some((r) => r.level === 'fail') ? 1 : 0
  } finally {
    await hypervisor.close()
  }
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`kiosk-vm-watchdog: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
