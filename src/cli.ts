#!/usr/bin/env node
// kiosk-vm-watchdog [serve|check-config|doctor|help] [--config FILE] [--json]
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { configPath, EXIT_CONFIG } from './config/load.ts'
import { serve } from './server.ts'

const CONFIG_FILE_HELP = `The config file is --config FILE, else $KVW_CONFIG, else ./config.yaml (defaults apply when
that file does not exist). A relative data_dir in it is relative to the file's directory.`

const USAGE = `usage: kiosk-vm-watchdog [command] [--config FILE] [--json]

commands:
  serve          run the watchdog and its HTTP API (default)
  check-config   validate the config file and the libvirt side (domain, snapshot), then exit
  doctor         check the host, libvirt, each VM and the service; one line per check
                 (--json: as JSON); exit code 1 when a check fails
  help [COMMAND] this text, or the help of one command (also: COMMAND --help)

${CONFIG_FILE_HELP}`

/** Each command's own help: `kiosk-vm-watchdog COMMAND --help` or `kiosk-vm-watchdog help COMMAND`. */
const COMMAND_HELP: Record<string, string> = {
  serve: `usage: kiosk-vm-watchdog serve [--config FILE]

Runs the watchdog and its HTTP API until SIGTERM (the VM is left running). SIGHUP re-reads the
config file. Settings that are given but not used (EVC keys, unknown VMCTL_ variables) are
logged as warnings at start.

exit codes: 78 invalid configuration, 73 another instance uses the data directory,
            69 a port is in use

${CONFIG_FILE_HELP}`,
  'check-config': `usage: kiosk-vm-watchdog check-config [--config FILE] [--json]
       kiosk-vm-watchdog --check [--config FILE]

Validates the config file and the environment overrides (KVW_*, exhibition-vm-controller's
VMCTL_* and its .env file beside the config file), then checks libvirt: the domain of each VM
and its snapshot. Settings that are given but not used are listed as a warning.

exit codes: 0 valid (warnings allowed), 1 a libvirt check failed, 78 invalid configuration

${CONFIG_FILE_HELP}`,
  doctor: `usage: kiosk-vm-watchdog doctor [--config FILE] [--json]

Checks the host, libvirt, each VM (domain, snapshot, disks, firmware, network, guest agent,
heartbeats, watchdog state, reverts) and the service (port, firewall, systemd units). One line
per check, with the fix for each problem; --json prints them as JSON. Run it as the service user
with the service's config, from any directory:
  sudo -u kiosk-vm-watchdog KVW_CONFIG=/etc/kiosk-vm-watchdog/config.yaml kiosk-vm-watchdog doctor

exit codes: 0 nothing failed (warnings allowed), 1 a check failed

${CONFIG_FILE_HELP}`,
  help: `usage: kiosk-vm-watchdog help [COMMAND]

Prints the list of commands, or the help of COMMAND (${['serve', 'check-config', 'doctor'].join(', ')}).`
}

function helpFor (command: string): string | null {
  return COMMAND_HELP[command] ?? null
}

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
  if (command === 'help' || values.help) {
    // `help`, `help COMMAND`, `COMMAND --help`; a bare --help is the overview.
    const topic = command === 'help' ? positionals[1] : (positionals.length > 0 || values.check ? command : undefined)
    if (topic === undefined) {
      process.stdout.write(USAGE + '\n')
      return 0
    }
    const text = helpFor(topic)
    if (text === null) {
      process.stderr.write(`unknown command "${topic}"\n${USAGE}\n`)
      return 64
    }
    process.stdout.write(text + '\n')
    return 0
  }
  const file = resolveConfigFile(values.config)
  switch (command) {
    case 'serve':
      await serve(file)
      return -1 // keeps running
    case 'check-config':
      return await (await import('./doctor/cli.ts')).doctorCli({ file, checkConfigOnly: true, json: values.json ?? false })
    case 'doctor':
      return await (await import('./doctor/cli.ts')).doctorCli({ file, json: values.json ?? false })
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
