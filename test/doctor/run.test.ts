// The runner (timeouts, throwing checks), the CLI (`doctor`, `doctor --json`, `check-config`)
// and GET /api/v1/doctor, on test:///default with scratch config files.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import { parseConfig } from '../../src/config/load.ts'
import { doctorChecks, doctorContext, formatResults, isCheckConfigId, runChecks } from '../../src/doctor/index.ts'
import { openHypervisor } from '../../src/libvirt/index.ts'
import { scratch } from './helpers.ts'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

t.test('a check that throws or hangs is a fail line; the others still report', async (t) => {
  const s = scratch(t)
  const ctx = doctorContext({ configFile: null, loaded: s.loaded, hypervisor: s.hypervisor, host: s.host })
  const report = await runChecks(ctx, [
    { id: 'throws', run: async () => { throw new Error('boom') } },
    { id: 'hangs', timeoutMs: 50, run: () => new Promise(() => {}) },
    { id: 'fine', run: async () => ({ level: 'ok', message: 'fine' }) }
  ])
  t.same(report.checks, [
    { id: 'throws', level: 'fail', message: 'throws: the check itself failed: boom' },
    { id: 'hangs', level: 'fail', message: 'hangs: no answer within 0.05 s (the check timed out)' },
    { id: 'fine', level: 'ok', message: 'fine' }
  ])
  t.same(report.counts, { ok: 1, warn: 0, fail: 2 })
  t.equal(report.ok, false)
  t.equal(formatResults([{ id: 'x', level: 'warn', message: 'm', fix: 'f' }]), 'warn x: m\n     fix: f')
})

t.test('every check id, in order; check-config is the subset', async (t) => {
  const ids = doctorChecks(['a']).map((c) => c.id)
  t.same(ids, [
    'config', 'data_dir', 'disk_space', 'libvirt', 'libvirt_groups', 'kvm',
    'domain:a', 'snapshot:a', 'disks:a', 'firmware:a', 'guest_network:a', 'guest_agent:a', 'heartbeats:a', 'watchdog:a', 'reverts:a',
    'api_port', 'firewall', 'systemd', 'systemd_viewer'
  ])
  t.same(ids.filter(isCheckConfigId), ['config', 'libvirt', 'domain:a', 'snapshot:a'])
})

function runCli (args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KVW_CONFIG: '' } })
}

t.test('CLI: doctor prints one line per check and exits 1 when one fails; --json; check-config', async (t) => {
  const s = scratch(t)
  const good = join(s.dir, 'good.yaml')
  writeFileSync(good, `libvirt_uri: test:///default\ndata_dir: ${join(s.dir, 'data')}\napi_host: 0.0.0.0\napi_port: 0\n`)
  const ok = runCli(['doctor', '--config', good])
  t.equal(ok.status, 0, ok.stdout + ok.stderr)
  t.match(ok.stdout, new RegExp(`^ok   config: config ${good.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is valid \\(1 VM: test\\)$`, 'm'))
  t.match(ok.stdout, /^ok {3}domain:test: domain "test" exists and is running/m)
  t.match(ok.stdout, /^\d+ ok, \d+ warn, 0 fail$/m)
  t.equal(ok.stdout.split('\n').filter((l) => /^(ok|warn|fail) /.test(l)).length, 19, 'one line per check')

  const missingVm = join(s.dir, 'missing.yaml')
  writeFileSync(missingVm, `libvirt_uri: test:///default\nvm_name: nosuch\ndata_dir: ${join(s.dir, 'data')}\napi_port: 1\n`)
  const failing = runCli(['doctor', '--config', missingVm, '--json'])
  t.equal(failing.status, 1)
  const report = JSON.parse(failing.stdout) as { ok: boolean, config: string, checks: Array<{ id: string, level: string, fix?: string }> }
  t.equal(report.ok, false)
  t.equal(report.config, missingVm)
  t.match(report.checks.find((c) => c.id === 'domain:nosuch'), { level: 'fail', fix: /virsh define/ })

  const check = runCli(['check-config', '--config', missingVm])
  t.equal(check.status, 1)
  t.same(check.stdout.split('\n').filter((l) => /^(ok|warn|fail) /.test(l)).map((l) => l.split(':')[0]), ['ok   config', 'ok   libvirt', 'fail domain', 'warn snapshot'])

  const bad = join(s.dir, 'bad.yaml')
  writeFileSync(bad, 'api_port: eighty\n')
  const invalid = runCli(['doctor', '--config', bad])
  t.equal(invalid.status, 1)
  t.match(invalid.stdout, /^fail config: config .*bad\.yaml is not valid: api_port: /m)
  t.match(invalid.stdout, /^warn data_dir: not checked: the config is not valid$/m)
})

t.test('GET /api/v1/doctor: the same checks, as JSON, from inside the service', async (t) => {
  const s = scratch(t)
  const config = parseConfig({ data_dir: join(s.dir, 'data') }, {})
  const app = await buildApp({ config, hypervisor: openHypervisor('test:///default', { reconnect: false }), doctorHost: s.host })
  t.teardown(() => app.close())
  // Admin only: it runs host commands and shows host details. No token configured: loopback only.
  const guest = await app.inject({ method: 'GET', url: '/api/v1/doctor', remoteAddress: '192.168.122.50' })
  t.equal(guest.statusCode, 403, 'not for guests')
  const res = await app.inject({ method: 'GET', url: '/api/v1/doctor', remoteAddress: '127.0.0.1' })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json() as { ok: boolean, config: null, counts: Record<string, number>, checks: Array<{ id: string, level: string, message: string }> }
  t.equal(body.config, null)
  t.equal(body.checks.length, 19)
  t.match(body.checks.find((c) => c.id === 'api_port'), { level: 'ok', message: '0.0.0.0:8000 is this service\'s: it answered this request' })
  t.match(body.checks.find((c) => c.id === 'domain:test'), { level: 'ok' })
  t.match(body.checks.find((c) => c.id === 'heartbeats:test'), { level: 'warn', message: 'no heartbeat from "test" since the service started; watchdog state: starting' })
  t.match(body.checks.find((c) => c.id === 'watchdog:test'), { level: 'ok', message: /\(watchdog\)$/ })
  t.equal(Object.values(body.counts).reduce((a, b) => a + b, 0), 19)
  // Two requests at once share one run.
  const [a, b] = await Promise.all([app.inject('/api/v1/doctor'), app.inject('/api/v1/doctor')])
  t.same(a.json(), b.json())
})
