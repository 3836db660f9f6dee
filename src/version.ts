// The service version and the application's root directory (the one holding its package.json,
// public/ beside it). Found by walking up from this module rather than by a fixed '../': this
// code runs from src/ (tsx, tests) and from the bundle in dist/ (service.cjs).
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const NAME = 'kiosk-vm-watchdog'

function findAppRoot (from: string): { root: string, version: string } {
  for (let dir = from; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === NAME && typeof pkg.version === 'string') return { root: dir, version: pkg.version }
    }
    if (dirname(dir) === dir) throw new Error(`no package.json of ${NAME} in ${from} or above it`)
  }
}

const found = findAppRoot(dirname(fileURLToPath(import.meta.url)))
/** The directory holding package.json: the checkout, or the installed tree (/opt/kiosk-vm-watchdog). */
export const APP_ROOT: string = found.root
export const VERSION: string = found.version
