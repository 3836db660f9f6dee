// libvirtd gone and back: how soon the service is connected again (issue 15, part 4). The real
// libvirtd of the e2e rig (test/e2e/daemons.sh) is killed (SIGKILL, a crash), left down for
// --outage seconds, and started again; meanwhile this script tries libvirtd's socket every 10 ms,
// so "answering again" is the first moment the socket accepts a connection. The service runs
// with the production reconnect settings (libvirt_reconnect_max 30 s, keepalive 5 s × 3) and
// watches a domain that does not exist: no guest is needed, only libvirtd. Prints numbers.
//   flock /tmp/kvw-e2e.lock node --import tsx bench/reconnect.ts [--runs 3] [--outage 10] [--dist] [--service-root DIR]
// Needs what test/e2e needs (root, libvirtd; `CI=true test/e2e/setup-host.sh` once). Holds the
// rig's e2e lock exclusively while it runs (nothing else may use libvirtd meanwhile).
import { existsSync } from 'node:fs'
import { createConnection } from 'node:net'
import { canRunE2E, killLibvirtd, setupHost, sleep, startLibvirtd, teardown } from '../harness/guest.ts'
import { freePort, removeServiceConfig, startService, writeServiceConfig, type ServiceProcess } from '../harness/service.ts'
import { benchArgs, describe, loadNote, reportFailure, serviceEntry, stats } from './lib.ts'

const args = benchArgs(3, { outage: { type: 'string' }, 'service-root': { type: 'string' } })
// --service-root DIR: run the service of another checkout (e.g. `git archive` of an older commit, built) for a before/after figure.
const serviceRoot = typeof args.values['service-root'] === 'string' ? args.values['service-root'] : null
const entry = serviceEntry(args.dist, serviceRoot ?? undefined)
const outageS = Number(args.values.outage ?? 10)
if (!(outageS >= 0 && outageS <= 600)) throw new Error(`--outage must be 0..600 s, got ${String(args.values.outage)}`)
const can = canRunE2E()
if (!can.ok) {
  console.error(`reconnect bench not possible here: ${can.why}`)
  process.exit(1)
}
const SOCKET = ['/run/libvirt/libvirt-sock', '/var/run/libvirt/libvirt-sock'].find((p) => existsSync(p)) ?? '/run/libvirt/libvirt-sock'

/** Resolves with Date.now() of the first moment libvirtd's socket accepts a connection (tried every 10 ms). */
async function socketAccepts (deadlineMs: number): Promise<number> {
  while (Date.now() < deadlineMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection(SOCKET)
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return Date.now()
    await sleep(10)
  }
  throw new Error(`libvirtd's socket ${SOCKET} did not accept within the deadline`)
}

const fromSocket: number[] = []
const fromStarted: number[] = []
let service: ServiceProcess | null = null
let failed = false
const port = await freePort()
const config = await writeServiceConfig({
  port,
  vmName: 'kvw-bench-reconnect-absent',
  extra: { log_level: 'info', libvirt_keepalive_interval: 5, libvirt_keepalive_count: 3, libvirt_reconnect_max: 30, heartbeat_timeout: 3600, startup_grace: 3600 }
})
try {
  console.log(`reconnect: service (${serviceRoot ?? '.'}: ${args.dist ? 'node dist/cli.js' : 'src/ via tsx'}) on qemu:///system, libvirtd killed and back after ${outageS} s, ${args.runs} runs, production reconnect settings`)
  console.log(`before: ${loadNote()}`)
  await setupHost({ exclusive: true })
  service = await startService(config, { entry })
  const svc = service
  await svc.waitForLog('connected to libvirt', (l) => l.msg === 'connected to libvirt', 60_000)
  for (let run = 0; run < args.runs; run++) {
    const killedAt = Date.now()
    await killLibvirtd('SIGKILL')
    await svc.waitForLog('libvirt connection lost', (l) => l.msg === 'libvirt connection lost', 60_000, killedAt)
    await sleep(outageS * 1000)
    const restartAt = Date.now()
    const accepting = socketAccepts(restartAt + 60_000)
    await startLibvirtd()
    const acceptedAt = await accepting
    const answeredAt = Date.now() // startLibvirtd resolves once virsh got an answer
    const connected = await svc.waitForLog('connected to libvirt again', (l) => l.msg === 'connected to libvirt', 60_000, restartAt)
    const at = typeof connected.time === 'number' ? connected.time : connected.receivedAt
    fromSocket.push(at - acceptedAt)
    fromStarted.push(at - restartAt)
    console.log(`  run ${run + 1}: libvirtd started → socket accepts ${acceptedAt - restartAt} ms, → virsh answered ${answeredAt - restartAt} ms, → service connected ${at - restartAt} ms (${at - acceptedAt} ms after the socket accepted)`)
  }
  console.log(`  socket accepts → service connected:    ${describe(stats(fromSocket))}`)
  console.log(`  libvirtd started → service connected:  ${describe(stats(fromStarted))}`)
  console.log(`after: ${loadNote()}`)
} catch (err) {
  failed = true
  reportFailure(err, service)
} finally {
  await service?.stop()
  await removeServiceConfig(config)
  await teardown().catch((err: unknown) => { console.error(err); failed = true })
}
process.exit(failed ? 1 : 0)
