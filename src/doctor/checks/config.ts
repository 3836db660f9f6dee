// config, data_dir, disk_space: the file that was read, and the directory the service writes.
import { access, constants, open, stat, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Check } from '../types.ts'
import { dataDirOf, errorText, formatBytes, nearestExisting, notChecked } from './common.ts'

export const DISK_WARN_BYTES = 1024 ** 3
export const DISK_FAIL_BYTES = 100 * 1024 ** 2

export const configCheck: Check = {
  id: 'config',
  async run (ctx) {
    const where = ctx.configFile ?? '(no file: defaults and environment only)'
    if (ctx.configError !== null) {
      return {
        level: 'fail',
        message: `config ${where} is not valid: ${ctx.configError.problems.join('; ')}`,
        fix: `edit ${ctx.configFile ?? 'config.yaml'} (every key: docs/configuration.md), then: kiosk-vm-watchdog check-config${ctx.configFile ? ` --config ${ctx.configFile}` : ''}`
      }
    }
    const vms = ctx.loaded!.vms.map((vm) => vm.name)
    const valid = `config ${where} is valid (${vms.length} VM${vms.length > 1 ? 's' : ''}: ${vms.join(', ')})`
    const warnings = ctx.loaded!.warnings ?? []
    if (warnings.length === 0) return { level: 'ok', message: valid }
    // Settings given but not used: a migrated EVC setup must see which of its settings do nothing.
    return {
      level: 'warn',
      message: `${valid}; ${warnings.length} setting${warnings.length > 1 ? 's' : ''} to look at:\n     - ${warnings.join('\n     - ')}`,
      fix: `remove them from ${ctx.configFile ?? 'the environment'} (or the environment / EVC's .env) once checked; docs/migration.md lists what each EVC setting became`
    }
  }
}

export const dataDirCheck: Check = {
  id: 'data_dir',
  async run (ctx) {
    const dir = dataDirOf(ctx)
    if (dir === null) return notChecked('the config is not valid')
    const other = await otherServiceStateDir(ctx, dir)
    const fix = other !== null ? other.fix : `sudo mkdir -p ${dir} && sudo chown ${ctx.host.user().username} ${dir} (or set data_dir)`
    const found = await nearestExisting(dir)
    if (!found.isDirectory) {
      return { level: 'fail', message: `data_dir ${dir} cannot be used: ${found.path} is not a directory`, fix }
    }
    if (!found.exists) {
      try {
        await access(found.path, constants.W_OK)
      } catch (err) {
        return { level: 'fail', message: `data_dir ${dir} does not exist and cannot be created: ${found.path} is not writable (${errorText(err)})`, fix }
      }
      return { level: 'ok', message: `data_dir ${dir} does not exist yet; the service creates it (${found.path} is writable)` }
    }
    // Writing a file is the only reliable answer (read-only mounts, ACLs, root squash...).
    const probe = join(dir, `.doctor-probe-${process.pid}`)
    try {
      const handle = await open(probe, 'wx')
      await handle.close()
      await unlink(probe)
    } catch (err) {
      return { level: 'fail', message: `data_dir ${dir} is not writable by ${ctx.host.user().username}: ${errorText(err)}`, fix }
    }
    if (other !== null) return { level: 'warn', message: `data_dir ${dir} is writable; ${other.message}`, fix }
    return { level: 'ok', message: `data_dir ${dir} is writable` }
  }
}

/**
 * From the CLI: the installed service keeps its state in systemd's state directory (its unit sets
 * KVW_DATA_DIR). A config whose data_dir is elsewhere (an older install's `./data`) makes the
 * doctor read other saved state and reverts than the service's: say so, and how to fix it.
 */
async function otherServiceStateDir (ctx: Parameters<Check['run']>[0], dir: string): Promise<{ message: string, fix: string } | null> {
  const stateDir = ctx.host.paths.serviceStateDir
  if (ctx.service !== undefined || resolve(stateDir) === dir) return null
  try {
    if (!(await stat(stateDir)).isDirectory()) return null
  } catch {
    return null
  }
  return {
    message: `but the installed service keeps its state in ${stateDir} (systemd's state directory): the saved state and reverts below are read from ${dir}, not from the service`,
    fix: `set data_dir: ${stateDir} in ${ctx.configFile ?? 'config.yaml'} (the installer writes that), or run with KVW_DATA_DIR=${stateDir}`
  }
}

export const diskSpaceCheck: Check = {
  id: 'disk_space',
  async run (ctx) {
    const dir = dataDirOf(ctx)
    if (dir === null) return notChecked('the config is not valid')
    const found = await nearestExisting(dir)
    const free = await ctx.host.freeBytes(found.path)
    const message = `${formatBytes(free)} free for data_dir ${dir}`
    const fix = `free space on that file system (df -h ${found.path}; journalctl --vacuum-size=200M) or move data_dir`
    if (free < DISK_FAIL_BYTES) return { level: 'fail', message: `only ${message}: state and audit writes will fail`, fix }
    if (free < DISK_WARN_BYTES) return { level: 'warn', message: `only ${message} (below 1 GiB)`, fix }
    return { level: 'ok', message }
  }
}
