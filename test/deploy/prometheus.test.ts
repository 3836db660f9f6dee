// deploy/prometheus/: promtool checks the scrape config and the alert rules (and runs the rules'
// unit tests); every metric the rules and the Grafana dashboard use exists in the app's /metrics;
// and a real Prometheus on 127.0.0.1 scrapes the app on 127.0.0.1 and answers queries about it.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { debianTool } from '../helpers/debian-tool.ts'
import { build } from '../helpers/app.ts'

const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url))
const promtool = debianTool('promtool', 'prometheus')
const prometheus = debianTool('prometheus', 'prometheus')

interface Dashboard { panels: Array<{ id: number, title: string, type: string, gridPos: object, targets?: Array<{ expr: string }> }>, templating: { list: Array<{ name: string, definition?: string }> } }
const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as Dashboard
const rules = parseYaml(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ name: string, rules: Array<{ alert: string, expr: string }> }> }

/** Dashboard queries with Grafana's variables filled in, as Prometheus will see them. */
const dashboardExprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr.replaceAll('$instance', '.*').replaceAll('$vm', '.*')))
const ruleExprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr))

function runTool (path: string, args: string[]) {
  const r = spawnSync(path, args, { cwd: DIR, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

t.test('promtool: config, rules and the rules\' unit tests', { skip: 'skip' in promtool ? promtool.skip : false }, async (t) => {
  if ('skip' in promtool) return
  const config = runTool(promtool.path, ['check', 'config', 'prometheus.yml'])
  t.equal(config.status, 0, config.out)
  t.match(config.out, /SUCCESS: prometheus\.yml is valid/)
  const check = runTool(promtool.path, ['check', 'rules', 'alerts.yml'])
  t.equal(check.status, 0, check.out)
  t.match(check.out, /SUCCESS: 6 rules found/)
  const unit = runTool(promtool.path, ['test', 'rules', 'alerts.test.yml'])
  t.equal(unit.status, 0, unit.out)
  t.match(unit.out, /SUCCESS/)
  const targets = runTool(promtool.path, ['check', 'config', '--syntax-only', 'prometheus.yml'])
  t.equal(targets.status, 0, targets.out)
})

t.test('alerts and dashboard only use metrics the app exports', async (t) => {
  const { app } = await build(t, { time: 'real', config: { startup_grace: 3600 } })
  const text = (await app.inject({ url: '/metrics' })).body
  const exported = new Set<string>(['up'])
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(m[1]!)
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m[1]! + s)
  }
  const used = new Set<string>()
  for (const expr of [...ruleExprs, ...dashboardExprs, ...dashboard.templating.list.map((v) => v.definition ?? '')]) {
    for (const m of expr.matchAll(/\b(kvw_[a-z0-9_]+|up)\b(?=\s*[{[)\s=<>]|$)/g)) used.add(m[1]!)
  }
  t.ok(used.size >= 10, `${used.size} metrics used`)
  for (const name of used) t.ok(exported.has(name), `${name} is exported`)

  const ids = dashboard.panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  for (const p of dashboard.panels) t.ok(p.gridPos && p.type && p.title, `panel ${p.id} has a position, a type and a title`)
})

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

interface QueryResult { status: string, data: { result: Array<{ metric: Record<string, string>, value: [number, string] }> }, error?: string }

t.test('a real Prometheus scrapes the app and evaluates the rules', { skip: 'skip' in prometheus ? prometheus.skip : false }, async (t) => {
  if ('skip' in prometheus) return
  const { app } = await build(t, { time: 'real', config: { startup_grace: 3600 } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const appPort = (app.server.address() as AddressInfo).port
  const dir = mkdtempSync(join(tmpdir(), 'kvw-prometheus-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: ['${join(DIR, 'alerts.yml')}']`,
    'scrape_configs:',
    '  - job_name: kiosk-vm-watchdog',
    `    static_configs: [{ targets: ['127.0.0.1:${appPort}'] }]`,
    ''
  ].join('\n'))
  const promPort = await freePort()
  const logs: string[] = []
  const child = spawn(prometheus.path, [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--log.level=warn'
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout!.on('data', (c: Buffer) => logs.push(String(c)))
  child.stderr!.on('data', (c: Buffer) => logs.push(String(c)))
  t.teardown(() => stop(child)) // by its PID, nothing else
  t.ok(child.pid, `prometheus started (pid ${child.pid})`)

  const api = `http://127.0.0.1:${promPort}/api/v1`
  const query = async (q: string): Promise<QueryResult> => {
    const res = await fetch(`${api}/query?query=${encodeURIComponent(q)}`)
    return await res.json() as QueryResult
  }
  async function waitFor (q: string, ok: (r: QueryResult) => boolean, ms = 30_000): Promise<QueryResult> {
    const until = Date.now() + ms
    let last: QueryResult | string = 'no answer'
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${logs.join('')}`)
      try {
        last = await query(q)
        if (ok(last)) return last
      } catch (err) {
        last = String(err)
      }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    throw new Error(`${q}: not as expected within ${ms} ms; last: ${JSON.stringify(last)}; prometheus log: ${logs.join('')}`)
  }

  const connected = await waitFor('kvw_libvirt_connected', (r) => r.data?.result.length > 0)
  t.equal(connected.status, 'success')
  t.same(connected.data.result[0]!.metric, { __name__: 'kvw_libvirt_connected', instance: `127.0.0.1:${appPort}`, job: 'kiosk-vm-watchdog' })
  t.equal(connected.data.result[0]!.value[1], '1')

  const up = await query('up{job="kiosk-vm-watchdog"}')
  t.equal(up.data.result[0]?.value[1], '1', 'the scrape is healthy')

  const w = app.watchdogs.get('test')!
  for (let seq = 1; seq <= 3; seq++) w.heartbeat({ seq })
  await waitFor('kvw_heartbeats_total{vm="test"}', (r) => r.data?.result[0]?.value[1] === '3')
  t.pass('heartbeats counted by the app arrive in Prometheus')
  await waitFor('kvw_watchdog_state{vm="test",state="healthy"}', (r) => r.data?.result[0]?.value[1] === '1')
  t.pass('the watchdog state arrives')

  const rulesRes = await (await fetch(`${api}/rules`)).json() as { data: { groups: Array<{ name: string, rules: Array<{ name: string, health: string }> }> } }
  const group = rulesRes.data.groups.find((g) => g.name === 'kiosk-vm-watchdog')
  t.equal(group?.rules.length, 6, 'the alert rules are loaded')
  // Each rule reports its health after its first evaluation (every second here).
  let evaluated = group!.rules
  for (const until = Date.now() + 10_000; evaluated.some((r) => r.health === 'unknown') && Date.now() < until;) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    const r = await (await fetch(`${api}/rules`)).json() as typeof rulesRes
    evaluated = r.data.groups.find((g) => g.name === 'kiosk-vm-watchdog')!.rules
  }
  const unhealthy = evaluated.filter((x) => x.health !== 'ok').map((x) => `${x.name}: ${x.health}`)
  t.same(unhealthy, [], 'every rule evaluates without error')

  for (const expr of dashboardExprs) {
    const r = await query(expr)
    t.equal(r.status, 'success', `dashboard query is valid PromQL: ${expr.slice(0, 80)}${r.error ? ' — ' + r.error : ''}`)
  }
  const state = await query(dashboardExprs.find((e) => e.startsWith('max by (instance, vm)'))!)
  t.equal(state.data.result[0]?.value[1], '2', 'the state-timeline query maps healthy to 2')
})
