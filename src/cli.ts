#!/usr/bin/env node
// kiosk-vm-watchdog [serve|check-config|doctor] [--config FILE] [--json]
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { configPath, EXIT_CONFIG } from './config/load.ts'
import { doctorCli } from './doctor/cli.ts'
import { serve } from './server.ts'

const USAGE = `usage: kiosk-vm-watchdog [command] [--config FILE] [--json]

commands:
  serve          run the watchdog and its HTTP API (default)
  check-config   validate the config file and the libvirt side (domain, snapshot), then exit
  doctor         check the host, libvirt, each VM and the service; one line per check
                 (--json: as JSON); exit code 1 when a check fails

The config file is --config FILE, else $KVW_CONFIG, else ./config.yaml (defaults apply when
that file does not exist).`

// libvirt's event loop holds one libuv worker for good; libvirt calls and file I/O share the
// rest (4 by default). Set before the pool starts, i.e. before any async libvirt or fs call.
process.env['UV_THREADPOOL_SIZE'] ??= '8'

async function main (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, check: { type: 'boolean' }, json: { type: 'boolean' } }
    })
  } catch (err) {
    // `--config` without a file is a configuration problem (78, as systemd's unit expects);
    // any other unknown or incomplete option is a usage error (64).
    const message = (err as Error).message
    process.stderr.write(`kiosk-vm-watchdog: ${message}\n${USAGE}\n`)
    return /'(-c|--config)\b/.test(message) ? EXIT_CONFIG : 64
  }
  const { values, positionals } = parsed
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
      return await doctorCli({ file, checkConfigOnly: true, json: values.json ?? false })
    case 'doctor':
      return await doctorCli({ file, json: values.json ?? false })
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

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`kiosk-vm-watchdog: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
