// Scratch setups for the doctor tests: a real config in a scratch dir, real libvirt (test:///default
// or a custom test-driver file), and a Host whose files live in the scratch dir. Commands that
// would read or need the real host's state (systemctl, nft) answer from a table of recorded
// output; every other command runs for real.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { parseConfig, type LoadedConfig } from '../../src/config/load.ts'
import { doctorContext, realHost, runCheck, type Check, type CheckResult, type CommandResult, type Host, type WatchdogLike } from '../../src/doctor/index.ts'
import { openHypervisor, type Hypervisor } from '../../src/libvirt/index.ts'

export interface ScratchOptions {
  config?: Record<string, unknown>
  /** libvirt URI; default test:///default. A domain XML list makes a custom test-driver file. */
  uri?: string
  domains?: string[]
  /** Recorded command output: key "program arg arg". */
  commands?: Record<string, CommandResult>
  host?: Partial<Omit<Host, 'paths'>> & { paths?: Partial<Host['paths']> }
  now?: () => number
}

export interface Scratch {
  dir: string
  loaded: LoadedConfig
  hypervisor: Hypervisor
  host: Host
  /** Runs one check with a fresh context (as the doctor does). */
  run (check: Check, extra?: { service?: { watchdogs: Map<string, WatchdogLike> } }): Promise<CheckResult>
}

export const DEFAULT_NETWORK_XML = `<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='lo' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
`

/** A domain for a custom test-driver file (libvirt's test driver reads `<node>` with domains). */
export function testDomain (name: string, devices: string, os = ''): string {
  return `<domain type='test'><name>${name}</name><memory>131072</memory><os><type>hvm</type>${os}</os><devices>${devices}</devices></domain>`
}

export const QCOW2_DISK = "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/guest/kiosk.qcow2'/><target dev='vda' bus='virtio'/></disk>"
export const RAW_DISK = "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/guest/kiosk.img'/><target dev='vda' bus='virtio'/></disk>"
export const USER_NET = "<interface type='user'><mac address='52:54:00:00:00:01'/></interface>"

export function scratch (t: Test, options: ScratchOptions = {}): Scratch {
  // One fresh directory per call (t.testdir is one per test and would be wiped by a second call).
  const dir = mkdtempSync(join(tmpdir(), 'kvw-doctor-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'data'))
  mkdirSync(join(dir, 'networks'))
  writeFileSync(join(dir, 'networks', 'default.xml'), DEFAULT_NETWORK_XML)
  writeFileSync(join(dir, 'group'), 'root:x:0:\nlibvirt:x:106:\nkvm:x:107:\nkiosk:x:1000:\n')
  writeFileSync(join(dir, 'pid1'), 'process_api\n')
  writeFileSync(join(dir, 'kvm'), '')
  let uri = options.uri ?? 'test:///default'
  if (options.domains) {
    const file = join(dir, 'node.xml')
    writeFileSync(file, `<node>${options.domains.join('\n')}</node>`)
    uri = `test://${file}`
  }
  const loaded = parseConfig({ libvirt_uri: uri, data_dir: join(dir, 'data'), ...options.config }, {})
  const hypervisor = openHypervisor(uri, { reconnect: false, keepaliveInterval: 0 })
  t.teardown(() => hypervisor.close())
  const real = realHost()
  const commands = options.commands ?? {}
  const host: Host = {
    ...real,
    run: async (command, args, timeoutMs) => commands[[command, ...args].join(' ')] ?? real.run(command, args, timeoutMs),
    ...options.host,
    paths: {
      kvm: join(dir, 'kvm'),
      groupFile: join(dir, 'group'),
      libvirtNetworks: join(dir, 'networks'),
      systemdRunDir: join(dir, 'no-systemd-run-dir'),
      serviceStateDir: join(dir, 'no-service-state-dir'),
      ...options.host?.paths
    }
  }
  return {
    dir,
    loaded,
    hypervisor,
    host,
    run: (check, extra) => runCheck(doctorContext({
      configFile: null,
      loaded,
      hypervisor,
      host,
      ...(options.now ? { now: options.now } : {}),
      ...(extra?.service ? { service: extra.service } : {})
    }), check)
  }
}

export const ok = (stdout: string): CommandResult => ({ code: 0, stdout, stderr: '' })
export const exit = (code: number, stdout: string, stderr = ''): CommandResult => ({ code, stdout, stderr })
export const missing: CommandResult = { code: null, stdout: '', stderr: '', error: 'ENOENT' }

/** The real object with some methods replaced; every other member is the real one's. */
export function override<T extends object> (target: T, methods: Partial<T>): T {
  return new Proxy(target, {
    get (obj, prop) {
      if (prop in methods) return (methods as Record<PropertyKey, unknown>)[prop]
      const value = Reflect.get(obj, prop, obj) as unknown
      return typeof value === 'function' ? value.bind(obj) : value
    }
  })
}
