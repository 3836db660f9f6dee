// Finds a program from a Debian package for a test. Installs the package only on a test machine
// (CI=true, as root); anywhere else (a museum host, a laptop) it never changes the system and
// returns why the test is skipped instead.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

export type ToolLookup = { path: string } | { skip: string }

function which (program: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' })
  const path = r.stdout.trim()
  return r.status === 0 && path !== '' && existsSync(path) ? path : null
}

export function debianTool (program: string, debianPackage: string): ToolLookup {
  const found = which(program)
  if (found) return { path: found }
  if (process.env['CI'] !== 'true') {
    return { skip: `${program} is not installed (Debian package "${debianPackage}"); install it, or run with CI=true as root to have the test install it` }
  }
  if (process.getuid?.() !== 0) return { skip: `${program} is missing and CI=true, but installing "${debianPackage}" needs root` }
  try {
    // policy-rc.d: the package must not start its service (Prometheus on :9090) on its own.
    execFileSync('sh', ['-c',
      'set -e; created=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf "#!/bin/sh\\nexit 101\\n" > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1; fi; ' +
      'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends "$0"; rc=$?; ' +
      '[ "$created" = 1 ] && rm -f /usr/sbin/policy-rc.d; exit $rc', debianPackage], { stdio: 'pipe', timeout: 600_000 })
  } catch (err) {
    return { skip: `installing "${debianPackage}" failed: ${(err as Error).message.split('\n')[0]}` }
  }
  const installed = which(program)
  return installed ? { path: installed } : { skip: `"${debianPackage}" was installed but ${program} is still not found` }
}
