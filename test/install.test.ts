// scripts/install.sh and scripts/uninstall.sh into a scratch DESTDIR: what lands where, that a
// second run changes nothing (same files, same inodes), that an edited config survives, that the
// installed tree runs, and that uninstall keeps config and data unless --purge.
import t from 'tap'
import { appendFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawn, spawnSync } from 'node:child_process'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { loadConfig } from '../src/config/load.ts'
import { openNotifySocket, notifySocketUnavailable } from './helpers/notify-socket.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NAME = 'kiosk-vm-watchdog'
const scratch = mkdtempSync(join(tmpdir(), 'kvw-install-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))

// The production build (the bundle) of the current sources into the scratch directory: the
// repository's dist/ is shared with whoever else builds, and type errors elsewhere are not this
// test's subject (scripts/build.mjs does not type-check; `npm run build` does first).
const dist = join(scratch, 'dist')
const build = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--outdir', dist], { encoding: 'utf8' })
if (!existsSync(join(dist, 'cli.js'))) throw new Error(`building into ${dist} failed: ${build.stdout}${build.stderr}`)

interface Run { status: number | null, out: string }
function script (name: 'install' | 'uninstall', destdir: string, args: string[] = []): Run {
  const extra = name === 'install' ? ['--node', process.execPath, '--dist', dist] : []
  const r = spawnSync('sh', [join(ROOT, 'scripts', `${name}.sh`), ...extra, ...args], {
    encoding: 'utf8',
    env: { ...process.env, DESTDIR: destdir }
  })
  return { status: r.status, out: r.stdout + r.stderr }
}

/** Every file and link under dir with what would show a rewrite: content size, mode, mtime and inode. */
function manifest (dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = join(d, entry)
      const s = lstatSync(p)
      if (s.isDirectory()) {
        out[relative(dir, p) + '/'] = `dir ${s.mode.toString(8)}`
        walk(p)
      } else {
        out[relative(dir, p)] = `${s.isSymbolicLink() ? 'link' : 'file'} ${s.mode.toString(8)} ${s.size} ${s.mtimeMs} ${s.ino}`
      }
    }
  }
  walk(dir)
  return out
}
const files = (m: Record<string, string>) => Object.keys(m).filter((k) => !k.endsWith('/'))

const destdir = join(scratch, 'root')
const app = join(destdir, 'opt', NAME)
const config = join(destdir, 'etc', NAME, 'config.yaml')
const unit = join(destdir, 'etc/systemd/system', `${NAME}.service`)
const userUnit = join(destdir, 'etc/systemd/user/kiosk-viewer.service')
const sessionTarget = join(destdir, 'etc/systemd/user/kiosk-session.target')
const viewerWanted = join(destdir, 'etc/systemd/user/kiosk-session.target.wants/kiosk-viewer.service')
const dataFile = join(destdir, 'var/lib', NAME, 'audit.jsonl')

t.test('first install: application, units, config; no user or systemd under DESTDIR', async (t) => {
  const r = script('install', destdir)
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  for (const f of ['dist/cli.js', 'package.json', 'config.yaml.example', 'share/openbox-autostart', 'share/kiosk-viewer.service',
    'node_modules/fastify/package.json', 'node_modules/koffi/package.json', 'guest-scripts/linux/heartbeat.sh',
    ...(existsSync(join(ROOT, 'public')) ? ['public'] : [])]) {
    t.ok(existsSync(join(app, f)), `installed ${f}`)
  }
  t.notOk(existsSync(join(app, 'node_modules/tap')), 'no development packages (tap)')
  t.notOk(existsSync(join(app, 'node_modules/typescript')), 'no development packages (typescript)')
  t.notOk(existsSync(join(app, 'src')), 'no sources')

  const unitText = readFileSync(unit, 'utf8')
  t.match(unitText, new RegExp(`^ExecStart=${process.execPath} /opt/${NAME}/dist/cli.js serve$`, 'm'), 'ExecStart names this node and the prefix')
  t.equal(readFileSync(userUnit, 'utf8'), readFileSync(join(ROOT, 'systemd/kiosk-viewer.service'), 'utf8'))
  // The viewer hangs off the target the Openbox autostart starts (graphical-session.target is
  // never active under lightdm + Openbox on Debian 12), enabled for every user.
  t.equal(readFileSync(sessionTarget, 'utf8'), readFileSync(join(ROOT, 'systemd/kiosk-session.target'), 'utf8'))
  t.equal(readlinkSync(viewerWanted), '../kiosk-viewer.service', 'kiosk-session.target wants the viewer (systemctl --global enable)')

  t.equal(lstatSync(config).mode & 0o777, 0o640, 'config is not world-readable')
  const loaded = loadConfig(config, {})
  t.equal(loaded.config.libvirt_uri, 'qemu:///system', 'the installed config points at the host\'s libvirt')
  t.match(r.out, /not creating the system user/, 'says why no user was created')
  t.notMatch(r.out, /systemctl daemon-reload|enabled /, 'systemd is left alone under DESTDIR')
})

t.test('the installed tree runs with its production packages only', async (t) => {
  const r = spawnSync(process.execPath, [join(app, 'dist/cli.js'), '--help'], { encoding: 'utf8', cwd: scratch })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /usage: kiosk-vm-watchdog/)
})

t.test('the installed service starts under a notify socket, answers, and stops on SIGTERM', async (t) => {
  const dataDir = join(scratch, 'svc-data')
  const configFile = join(scratch, 'svc.yaml')
  writeFileSync(configFile, 'libvirt_uri: test:///default\nvm_name: test\napi_host: 127.0.0.1\napi_port: 0\ncreate_snapshot_if_missing: true\nlog_level: info\n')
  const sock = notifySocketUnavailable() ? null : await openNotifySocket()
  if (sock) t.teardown(() => sock.close())
  const child = spawn(process.execPath, [join(app, 'dist/cli.js'), 'serve'], {
    cwd: scratch,
    env: { ...process.env, KVW_CONFIG: configFile, KVW_DATA_DIR: dataDir, ...(sock ? { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '2000000' } : {}) }
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" log line within 20 s; stderr: ${stderr}`)), 20000)
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /listening at (http:\/\/127\.0\.0\.1:\d+)/i.exec(line)
      if (m) { clearTimeout(timer); resolve(m[1]!) }
    })
    child.on('exit', (code) => reject(new Error(`the service exited (${code}) before listening: ${stderr}`)))
  })
  const res = await fetch(`${url}/api/v1/status`)
  t.equal(res.status, 200, 'GET /api/v1/status answers 200')
  t.equal((await res.json() as { version?: string }).version, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version, 'its version, read from the installed package.json')
  // Files the bundle finds on disk: the dashboard (public/ beside package.json) and Swagger UI's.
  for (const path of ['/ui/', '/ui/app.js', '/docs/', '/docs/static/swagger-ui.css']) {
    const page = await fetch(`${url}${path}`)
    await page.arrayBuffer()
    t.equal(page.status, 200, `GET ${path} answers 200`)
  }
  if (sock) {
    const ready = await sock.waitFor((m) => m.fields['READY'] === '1', 10000, 'READY=1').then(() => true, () => false)
    t.ok(ready, 'systemd hears READY=1 from the service')
    if (ready) t.ok(sock.messages.every((m) => m.pid === child.pid), 'from the main process (NotifyAccess=main)')
  }
  // systemd waits TimeoutStopSec=30 before SIGKILL; the service's own grace period is 15 s.
  child.kill('SIGTERM')
  const code = await Promise.race([exited, delay(25000, 'still running' as const, { ref: false })])
  t.equal(code, 0, 'SIGTERM: a clean exit within 25 s', { stderr: stderr.slice(-2000) })
})

t.test('the installed service keeps V8\'s code cache in CACHE_DIRECTORY: saved by one start, used by the next', async (t) => {
  const cacheDir = join(scratch, 'svc-cache')
  mkdirSync(cacheDir, { mode: 0o700 })
  const configFile = join(scratch, 'svc-cache.yaml')
  writeFileSync(configFile, 'libvirt_uri: test:///default\nvm_name: test\napi_host: 127.0.0.1\napi_port: 0\ncreate_snapshot_if_missing: true\nlog_level: info\n')
  /** Starts the installed service until a log line matches UNTIL; its lines by then (JSON), then SIGTERM. */
  const runUntil = async (until: RegExp, nodeFlags: string[] = []): Promise<Array<Record<string, unknown>>> => {
    // Through env(1) without NODE_OPTIONS: tap's processinfo puts itself there for every node child,
    // and it turns source maps on (boot.ts then leaves the cache off, see the last start).
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...nodeFlags, join(app, 'dist/cli.js'), 'serve'], {
      cwd: scratch,
      env: { ...process.env, KVW_CONFIG: configFile, KVW_DATA_DIR: join(scratch, 'svc-cache-data'), CACHE_DIRECTORY: cacheDir }
    })
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    const lines: Array<Record<string, unknown>> = []
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no line matching ${until} within 30 s; stderr: ${stderr}; stdout: ${JSON.stringify(lines).slice(0, 1500)}`)), 30_000)
      createInterface({ input: child.stdout }).on('line', (line) => {
        try { lines.push(JSON.parse(line) as Record<string, unknown>) } catch {}
        if (until.test(line)) resolve()
      })
      child.on('exit', (code) => reject(new Error(`the service exited (${code}): ${stderr}`)))
    }).finally(() => clearTimeout(timer))
    child.kill('SIGTERM')
    await exited
    return lines
  }
  const starting = (lines: Array<Record<string, unknown>>) => lines.find((l) => l['msg'] === 'starting')?.['codeCache']
  // The bundle's ES modules were strict; in one CommonJS file "use strict" must open it (after the
  // "#!" line turned comment), or esbuild's own comes after the banner and is no directive.
  t.match(readFileSync(join(app, 'dist/service.cjs'), 'utf8').slice(0, 200), /^\/\/[^\n]*\n'use strict';/, 'dist/service.cjs is strict')

  const first = await runUntil(/code cache (saved|not saved)/)
  t.equal(starting(first), 'missing', 'the first start finds no cache')
  t.ok(first.some((l) => l['msg'] === 'code cache saved: the next start compiles less'), 'and saves one once it is up')
  const saved = readdirSync(cacheDir).filter((f) => f.endsWith('.v8cache'))
  t.equal(saved.length, 1, 'one cache file')
  t.equal(lstatSync(join(cacheDir, saved[0]!)).mode & 0o777, 0o600)
  const second = await runUntil(/listening at/)
  t.equal(starting(second), 'used', 'the next start runs the saved bytecode')
  const mapped = await runUntil(/listening at/, ['--enable-source-maps'])
  t.equal(starting(mapped), 'off', 'with --enable-source-maps node loads the bundle itself (stack traces name src/ lines)')
})

t.test('second install changes nothing', async (t) => {
  const before = manifest(destdir)
  const r = script('install', destdir)
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.match(r.out, /nothing to change/)
  t.same(manifest(destdir), before, 'every file, mode, mtime and inode as before')
})

t.test('an edited config survives; the new example goes beside it', async (t) => {
  appendFileSync(config, '\n# edited by the technician\nheartbeat_timeout: 30\n')
  const edited = readFileSync(config, 'utf8')
  const r = script('install', destdir)
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.equal(readFileSync(config, 'utf8'), edited, 'config.yaml is untouched')
  t.match(r.out, /kept your .*config\.yaml; the new example is beside it as config\.yaml\.new/)
  t.match(readFileSync(`${config}.new`, 'utf8'), /^libvirt_uri: qemu:\/\/\/system$/m)
  const before = manifest(destdir)
  const again = script('install', destdir)
  t.equal(again.status, 0, 'exits 0', { output: again.out })
  t.same(manifest(destdir), before, 'and a further run changes nothing either')
})

t.test('a changed build replaces the application tree', async (t) => {
  const stale = join(app, 'dist', 'left-over.js')
  writeFileSync(stale, '// not part of the build\n')
  const r = script('install', destdir)
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.match(r.out, /installed the application/)
  t.notOk(existsSync(stale), 'files not in the build are gone')
  t.notOk(readdirSync(join(destdir, 'opt')).some((e) => e.includes('install')), 'no staging directory left behind')
})

t.test('uninstall removes the application and units, keeps config and data', async (t) => {
  mkdirSync(join(destdir, 'var/lib', NAME), { recursive: true })
  writeFileSync(dataFile, '{"kind":"revert"}\n')
  const r = script('uninstall', destdir)
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.notOk(existsSync(app))
  t.notOk(existsSync(unit))
  t.notOk(existsSync(userUnit))
  t.notOk(existsSync(sessionTarget))
  t.notOk(existsSync(viewerWanted) || existsSync(dirname(viewerWanted)), 'the wants link and its directory are gone')
  t.ok(existsSync(config), 'config kept')
  t.ok(existsSync(dataFile), 'data kept')
  t.match(r.out, /kept .*etc\/kiosk-vm-watchdog \(remove it with --purge\)/)
  const twice = script('uninstall', destdir)
  t.equal(twice.status, 0, 'a second uninstall is harmless')
})

t.test('uninstall --purge leaves no file behind', async (t) => {
  const r = script('uninstall', destdir, ['--purge'])
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.same(files(manifest(destdir)), [])
})

t.test('--prefix moves the application and the unit follows', async (t) => {
  const other = join(scratch, 'prefixed')
  const r = script('install', other, ['--prefix', '/srv/kvw'])
  t.equal(r.status, 0, 'exits 0', { output: r.out })
  t.ok(existsSync(join(other, 'srv/kvw/dist/cli.js')))
  t.match(readFileSync(join(other, 'etc/systemd/system', `${NAME}.service`), 'utf8'), /^ExecStart=\S+ \/srv\/kvw\/dist\/cli\.js serve$/m)
  t.equal(script('uninstall', other, ['--prefix', '/srv/kvw', '--purge']).status, 0)
  t.same(files(manifest(other)), [])
})

t.test('bad input is refused with a message naming it', async (t) => {
  const bad = join(scratch, 'bad')
  const relativePrefix = script('install', bad, ['--prefix', 'opt/kvw'])
  t.not(relativePrefix.status, 0)
  t.match(relativePrefix.out, /--prefix must be an absolute path, got 'opt\/kvw'/)
  const unknown = script('install', bad, ['--frobnicate'])
  t.equal(unknown.status, 64)
  t.match(unknown.out, /unknown option '--frobnicate'/)
  const oldNode = spawnSync('sh', [join(ROOT, 'scripts/install.sh'), '--node', '/bin/false', '--dist', dist], { encoding: 'utf8', env: { ...process.env, DESTDIR: bad } })
  t.not(oldNode.status, 0)
  const noDist = script('install', bad, ['--dist', join(scratch, 'nope')])
  t.not(noDist.status, 0)
  t.notOk(existsSync(join(bad, 'opt', NAME)), 'nothing installed after a refusal')
  t.equal(script('uninstall', bad, ['--prefix', '/usr']).status, 1, 'uninstall refuses a system directory as prefix')
})
