// systemd and systemd_viewer: the service unit installed, enabled and active; the viewer unit too
// when it is installed. Read-only: `systemctl is-enabled` / `is-active`.
import { stat } from 'node:fs/promises'
import type { Check, DoctorContext } from '../types.ts'
import type { Finding } from './common.ts'

export const SERVICE_UNIT = 'kiosk-vm-watchdog.service'
export const VIEWER_UNIT = 'kiosk-viewer.service'

/**
 * sd_booted(3): /run/systemd/system exists. Not /proc/1/comm: the service runs with
 * ProtectProc=invisible, which hides other users' processes, PID 1 included.
 */
async function systemdBooted (ctx: DoctorContext): Promise<boolean> {
  try {
    return (await stat(ctx.host.paths.systemdRunDir)).isDirectory()
  } catch {
    return false
  }
}

function notBooted (ctx: DoctorContext, unit: string): Finding {
  return { level: 'warn', message: `this host was not booted with systemd (no ${ctx.host.paths.systemdRunDir}): cannot check ${unit}` }
}

interface UnitState { enabled: string, active: string, problem?: string }

async function unitState (ctx: DoctorContext, unit: string): Promise<UnitState> {
  // Both print one word on stdout whatever their exit code (which only says "not enabled/active").
  const [enabled, active] = await Promise.all([
    ctx.host.run('systemctl', ['is-enabled', unit], 3000),
    ctx.host.run('systemctl', ['is-active', unit], 3000)
  ])
  const failed = [enabled, active].find((r) => r.error !== undefined)
  const word = (out: string, err: string) => out.trim().split('\n')[0] || (/not found|No such file/i.test(err) ? 'not-found' : 'unknown')
  return {
    enabled: word(enabled.stdout, enabled.stderr),
    active: word(active.stdout, active.stderr),
    ...(failed ? { problem: `systemctl: ${failed.error}` } : {})
  }
}

const ENABLED = new Set(['enabled', 'enabled-runtime', 'static', 'alias', 'indirect', 'generated'])

async function checkUnit (ctx: DoctorContext, unit: string): Promise<Finding> {
  if (!await systemdBooted(ctx)) return notBooted(ctx, unit)
  const s = await unitState(ctx, unit)
  if (s.problem) return { level: 'warn', message: `cannot ask systemd about ${unit}: ${s.problem}` }
  if (s.enabled === 'not-found') {
    return { level: 'warn', message: `${unit} is not installed: nothing starts the watchdog at boot`, fix: 'sudo apt-get install ./kiosk-vm-watchdog_*.deb, or from a checkout: sudo ./scripts/install.sh (docs/install.md)' }
  }
  const enabled = ENABLED.has(s.enabled)
  const active = s.active === 'active'
  const state = `${s.enabled}, ${s.active}`
  if (enabled && active) return { level: 'ok', message: `${unit} is ${state}` }
  const fix = `sudo systemctl enable --now ${unit}${active ? '' : `; if it keeps failing: journalctl -u ${unit.replace(/\.service$/, '')} -o cat | tail`}`
  if (!active) return { level: 'fail', message: `${unit} is ${state}: not running`, fix }
  return { level: 'warn', message: `${unit} is ${state}: it will not start at boot`, fix }
}

export const systemdCheck: Check = {
  id: 'systemd',
  async run (ctx) {
    return checkUnit(ctx, SERVICE_UNIT)
  }
}

export const viewerCheck: Check = {
  id: 'systemd_viewer',
  async run (ctx) {
    // A user unit (/etc/systemd/user), started by the kiosk session's autostart: its running
    // state lives in that user's systemd, so only its installation is visible from here.
    if (!await systemdBooted(ctx)) return notBooted(ctx, VIEWER_UNIT)
    const r = await ctx.host.run('systemctl', ['--global', 'is-enabled', VIEWER_UNIT], 3000)
    if (r.error !== undefined) return { level: 'warn', message: `cannot ask systemd about ${VIEWER_UNIT}: systemctl: ${r.error}` }
    const word = r.stdout.trim().split('\n')[0] || (/not found|No such file/i.test(r.stderr) ? 'not-found' : 'unknown')
    if (word === 'not-found') return { level: 'ok', message: `${VIEWER_UNIT} is not installed (fine on a host without a screen)` }
    return { level: 'ok', message: `${VIEWER_UNIT} is installed as a user unit (${word}); the kiosk session starts it: check there with systemctl --user status kiosk-viewer` }
  }
}
