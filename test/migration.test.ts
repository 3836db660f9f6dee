// The migration promise of docs/migration.md, tested: an exhibition-vm-controller config.yaml
// (every key it had, with its values) loads unchanged, and the EVC endpoints its guest scripts
// and technicians call answer with EVC's field names. Real app, libvirt's test driver.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/load.ts'
import { openHypervisor } from '../src/libvirt/index.ts'
import { scratchDir } from './helpers/scratch.ts'

// EVC v1.3.0's config.yaml keys and defaults (notes/exhibition-vm-controller-reference.md).
const EVC_CONFIG = `# exhibition-vm-controller config.yaml
vm_name: test
snapshot_name: ready
heartbeat_timeout: 15.0
heartbeat_check_interval: 0.5
vm_startup_wait_interval: 10.0
vm_startup_max_attempts: 30
vm_startup_heartbeat_delay: 10.0
auto_revert_enabled: true
api_host: "0.0.0.0"
api_port: 8000
api_reload: false
log_level: "INFO"
log_format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
check_qemu_agent: true
qemu_agent_timeout: 5.0
`

t.test('an EVC config.yaml loads as it is', async (t) => {
  const dir = t.testdir({ 'config.yaml': EVC_CONFIG })
  const loaded = loadConfig(join(dir, 'config.yaml'), {})
  t.match(loaded.config, {
    vm_name: 'test',
    snapshot_name: 'ready',
    heartbeat_timeout: 15,
    heartbeat_check_interval: 0.5,
    auto_revert_enabled: true,
    api_host: '0.0.0.0',
    api_port: 8000,
    log_level: 'info'
  })
  t.equal(loaded.vms[0]!.startup_grace, 10, 'vm_startup_heartbeat_delay stands in for startup_grace')
  // EVC's environment overrides keep working.
  t.equal(loadConfig(join(dir, 'config.yaml'), { VMCTL_API_PORT: '8100' }).config.api_port, 8100)
})

t.test('the Environment= lines of EVC\'s unit apply, and check-config names the settings it ignores', async (t) => {
  const dir = t.testdir({ 'config.yaml': EVC_CONFIG })
  // deployment/systemd/exhibition-vm-controller.service (EVC v1.3.0) sets these four.
  const unitEnv = { VMCTL_VM_NAME: 'exhibit', VMCTL_SNAPSHOT_NAME: 'start', VMCTL_API_PORT: '8001', VMCTL_LOG_LEVEL: 'DEBUG' }
  const loaded = loadConfig(join(dir, 'config.yaml'), unitEnv)
  t.match(loaded.config, { vm_name: 'exhibit', snapshot_name: 'start', api_port: 8001, log_level: 'debug' })
  const named = loaded.warnings.map((w) => /^(\w+)/.exec(w)![1])
  t.same(named.sort(), ['VMCTL_API_PORT', 'VMCTL_LOG_LEVEL', 'VMCTL_SNAPSHOT_NAME', 'VMCTL_VM_NAME', 'api_reload', 'check_qemu_agent', 'log_format', 'qemu_agent_timeout', 'vm_startup_max_attempts', 'vm_startup_wait_interval'],
    'each ignored EVC key, and each variable that overrides a value of the file')
})

t.test('the EVC endpoints answer with EVC\'s field names', async (t) => {
  const dir = scratchDir(t)
  writeFileSync(join(dir, 'config.yaml'), EVC_CONFIG)
  // data_dir is not an EVC key: the systemd unit sets it through the environment.
  const loaded = loadConfig(join(dir, 'config.yaml'), { KVW_DATA_DIR: join(dir, 'data') })
  const app = await buildApp({ config: loaded, hypervisor: openHypervisor(loaded.config.libvirt_uri, { reconnect: false }) })
  t.teardown(() => app.close())
  // The guest scripts and a technician's browser on the host: loopback, no token (as with EVC).
  const get = (url: string, remoteAddress = '127.0.0.1') => app.inject({ method: 'GET', url, remoteAddress })

  const hb = await get('/api/v1/heartbeat', '192.168.122.10')
  t.equal(hb.statusCode, 200, `GET /api/v1/heartbeat: ${hb.body}`)

  const status = await get('/api/v1/status')
  t.equal(status.statusCode, 200, status.body)
  t.match(status.json(), { vm_name: 'test', vm_state: 'running', vm_is_running: true, snapshot_name: 'ready', snapshot_exists: true, auto_revert_enabled: true })

  const hbStatus = await get('/api/v1/heartbeat/status')
  t.equal(hbStatus.statusCode, 200, hbStatus.body)
  const h = hbStatus.json() as Record<string, unknown>
  for (const key of ['last_heartbeat', 'time_since_heartbeat', 'is_timed_out', 'has_received_heartbeat', 'is_healthy', 'seconds_since_last', 'timeout', 'enabled']) {
    t.ok(key in h, `heartbeat/status has ${key}`)
  }
  t.match(h, { has_received_heartbeat: true, is_timed_out: false, is_healthy: true, timeout: 15, enabled: true })
  t.type(h['last_heartbeat'], 'number', 'epoch seconds, as EVC')

  const snaps = await get('/api/v1/snapshots')
  t.equal(snaps.statusCode, 200, snaps.body)
  t.match(snaps.json(), { vm_name: 'test', snapshots: Array })

  const create = await get('/api/v1/snapshot/create?snapshot_name=before_update')
  t.ok(create.statusCode >= 200 && create.statusCode < 300, `GET /api/v1/snapshot/create: ${create.statusCode} ${create.body}`)
  const after = (await get('/api/v1/snapshots')).json() as { snapshots: string[] }
  t.ok(after.snapshots.includes('before_update'), 'the new snapshot is listed under exactly its name (EVC: a list of names)')

  const disable = await get('/api/v1/revert/disable')
  t.equal(disable.statusCode, 200, disable.body)
  t.match((await get('/api/v1/status')).json(), { auto_revert_enabled: false })
  t.match((await get('/api/v1/heartbeat/status')).json(), { enabled: false })
  const enable = await get('/api/v1/revert/enable')
  t.equal(enable.statusCode, 200, enable.body)
  t.match((await get('/api/v1/status')).json(), { auto_revert_enabled: true })

  // What EVC's guest scripts call to ask for a revert (no reason).
  const restart = await get('/api/v1/vm/restart', '192.168.122.10')
  t.ok(restart.statusCode >= 200 && restart.statusCode < 300, `GET /api/v1/vm/restart: ${restart.statusCode} ${restart.body}`)
})
