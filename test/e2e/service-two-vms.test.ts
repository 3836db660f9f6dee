// One real service watching two real QEMU guests (config: vm_name = the first, vms = [the
// second]). With QEMU user networking both guests arrive from 127.0.0.1, so each names its VM
// (heartbeat.sh sends &vm=NAME). A hang of the second guest reverts the second VM only: the
// first keeps beating, stays healthy and is never reverted.
import t, { type Test } from 'tap'
import {
  canRunE2E, createControlServer, defineAndBoot, domainState, setupHost, takeReadySnapshot, teardown, waitFor,
  type ControlServer, type E2EDomain
} from '../../harness/guest.ts'
import {
  E2E_HEARTBEAT_TIMEOUT_S, firstBeatAfterRevert, freePort, removeServiceConfig, startService, waitForAudit, watchBeats, writeServiceConfig,
  type AuditEntryView, type ServiceConfig, type ServiceProcess
} from '../../harness/service.ts'

const FIRST = 'kvw-e2e-two-vms-first'
const SECOND = 'kvw-e2e-two-vms-second'

const can = canRunE2E()
if (!can.ok) {
  t.plan(0, `real-VM e2e not possible here: ${can.why}`)
} else {
  t.test('one service, two real VMs: a hang of the second reverts only the second', twoVms)
}

/** Samples GET /api/v1/vms every intervalMs: each VM's watchdog state over time. */
function sampleVmStates (service: ServiceProcess, intervalMs = 200) {
  const samples: Array<{ at: number, states: Record<string, string> }> = []
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  const poll = async () => {
    try {
      const list = await service.get('/api/v1/vms')
      samples.push({ at: Date.now(), states: Object.fromEntries((list.vms as Array<{ name: string, state: string }>).map((v) => [v.name, v.state])) })
    } catch {}
    if (!stopped) timer = setTimeout(poll, intervalMs)
  }
  poll().catch(() => {})
  return {
    samples,
    stop: () => {
      stopped = true
      if (timer) clearTimeout(timer)
    }
  }
}

async function twoVms (t: Test): Promise<void> {
  const fileStart = Date.now()
  const controls: ControlServer[] = []
  const guests: E2EDomain[] = []
  const stoppers: Array<() => void> = []
  // Filled in as they start; the teardown closes what exists.
  const made: { service?: ServiceProcess, config?: ServiceConfig } = {}
  t.teardown(async () => {
    const { service, config } = made
    if (!t.passing() && service) {
      t.comment(`service log (last 60 lines):\n${service.logs.slice(-60).map((l) => JSON.stringify(l)).join('\n')}\n${service.otherOutput()}`)
    }
    if (!t.passing()) for (const guest of guests) t.comment(`console of ${guest.name}:\n${await guest.readConsole()}`)
    for (const stop of stoppers) stop()
    await service?.kill()
    for (const control of controls) await control.close()
    if (config) await removeServiceConfig(config)
    await teardown()
  })

  await setupHost()
  const port = await freePort()
  const controlFirst = await createControlServer()
  const controlSecond = await createControlServer()
  controls.push(controlFirst, controlSecond)
  guests.push(await defineAndBoot({ name: FIRST, heartbeatPort: port, controlPort: controlFirst.port, guestVmName: FIRST }))
  guests.push(await defineAndBoot({ name: SECOND, heartbeatPort: port, controlPort: controlSecond.port, guestVmName: SECOND }))
  // Two TCG guests boot more slowly than one: start the service once both run their heartbeat
  // loop (they report the boot after starting it), so startup_grace is not spent on booting.
  await waitFor('both guests to report their boot', () => controlFirst.boots.length > 0 && controlSecond.boots.length > 0, 300_000, 100)
  t.comment(`both guests booted: ${Date.now() - fileStart} ms`)

  made.config = await writeServiceConfig({ port, vmName: FIRST, extra: { vms: [{ name: SECOND }] } })
  const svc = made.service = await startService(made.config)
  const beatsFirst = watchBeats(() => svc, 100, FIRST)
  const beatsSecond = watchBeats(() => svc, 100, SECOND)
  stoppers.push(beatsFirst.stop, beatsSecond.stop)
  await beatsFirst.waitForBeat(60_000, 0, (b) => (b.seq ?? 0) >= 2)
  await beatsSecond.waitForBeat(60_000, 0, (b) => (b.seq ?? 0) >= 2)
  t.comment(`heartbeats of both seen through the service: ${Date.now() - fileStart} ms`)

  const list = await waitFor('GET /api/v1/vms: both healthy', async () => {
    const body = await svc.get('/api/v1/vms').catch(() => null)
    return body !== null && body.vms.length === 2 && body.vms.every((v: { state: string }) => v.state === 'healthy') ? body : undefined
  }, 60_000, 100)
  t.equal(list.default_vm, FIRST, 'the default VM is vm_name')
  t.same(list.vms.map((v: { name: string }) => v.name).sort(), [FIRST, SECOND].sort(), 'GET /api/v1/vms lists both VMs')
  for (const name of [FIRST, SECOND]) {
    const entry = list.vms.find((v: { name: string }) => v.name === name)
    t.equal(entry.vm_running, true, `${name}: vm_running`)
    t.equal(entry.links.status, `/api/v1/vms/${name}/status`, `${name}: its status link`)
  }

  // `ready` of each guest, with the seq around it (to recognise a beat of the reverted guest).
  const snapSeq: Record<string, { before: number, after: number }> = {}
  for (const [name, beats] of [[FIRST, beatsFirst], [SECOND, beatsSecond]] as const) {
    const before = beats.maxSeq()
    await takeReadySnapshot(name)
    snapSeq[name] = { before, after: (await beats.waitForBeat(60_000, Date.now())).seq ?? -1 }
  }
  for (const name of [FIRST, SECOND]) {
    const status = await svc.get(`/api/v1/vms/${name}/status`)
    t.equal(status.vm_name, name, `GET /api/v1/vms/${name}/status is about ${name}`)
    t.equal(status.vm_is_running, true, `${name} runs`)
    t.equal(status.snapshot_target, 'ready', `${name}: the service sees its snapshot ready`)
    t.equal(status.snapshot_has_memory, true, `${name}: ready has memory state`)
    t.equal(status.watchdog.state, 'healthy', `${name}: healthy before the hang`)
  }
  t.equal((await svc.get('/api/v1/status')).vm_name, FIRST, 'the single-VM /api/v1/status is the first VM\'s')

  const states = sampleVmStates(svc)
  stoppers.push(states.stop)
  const watchFrom = Date.now()
  await beatsSecond.waitForBeat(60_000, 0, (b) => (b.seq ?? 0) >= snapSeq[SECOND]!.after + 3)
  const firstSeqAtHang = beatsFirst.maxSeq()
  const sent = Date.now()
  controlSecond.setCommand('hang')
  await controlSecond.waitForAck('hang', 60_000)

  const started = await waitForAudit(svc, 'revert_started', 60_000, sent, (e) => e.vm === SECOND)
  const startedAt = Date.parse(started.ts)
  t.equal(started.reason, 'heartbeat_timeout', 'the second VM is reverted for its missing heartbeats')
  t.equal(started.source, 'auto', 'an automatic revert')
  const finished = await waitForAudit(svc, 'revert_finished', 60_000, startedAt, (e) => e.vm === SECOND && e.reason === started.reason)
  const firstBeat = await firstBeatAfterRevert(beatsSecond, startedAt, 60_000)
  const snap = snapSeq[SECOND]!
  t.ok(firstBeat.seq !== null && firstBeat.seq >= snap.before && firstBeat.seq <= snap.after + 2,
    `the second's first seq after the revert (${firstBeat.seq}) is its snapshot's (${snap.before}..${snap.after}), not the ${beatsSecond.maxSeq(startedAt)} reached before`)
  const statusSecond = await waitFor('the second VM healthy again after its revert', async () => {
    const s = await svc.get(`/api/v1/vms/${SECOND}/status`).catch(() => null)
    return s !== null && s.watchdog.state === 'healthy' && s.watchdog.last_revert?.at === started.ts && s.watchdog.last_revert?.outcome === 'recovered' ? s : undefined
  }, 60_000, 100)
  t.equal(statusSecond.watchdog.last_revert.reason, 'heartbeat_timeout', 'the second\'s status names the reason')
  t.same(statusSecond.watchdog.counters.by_reason, { heartbeat_timeout: 1 }, 'the second VM was reverted once, for heartbeat_timeout')
  t.comment(`hang sent to revert start: ${startedAt - sent} ms; revert call ${String(finished.durationMs)} ms; revert start to first heartbeat: ${statusSecond.watchdog.last_revert.recovery_ms} ms (service), ${firstBeat.at - startedAt} ms (seen by polling)`)
  // Its heartbeats keep coming after the first one.
  await beatsSecond.waitForBeat(60_000, firstBeat.at + 1, (b) => (b.seq ?? -1) >= (firstBeat.seq ?? 0) + 2)

  // The first guest beat on all along, and goes on beating after the second recovered.
  const recoveredAt = Date.now()
  await beatsFirst.waitForBeat(60_000, recoveredAt, (b) => (b.seq ?? -1) > firstSeqAtHang + 3)
  states.stop()
  const watchTo = Date.now()

  const reverts = await svc.events('revert_started')
  t.same(reverts.filter((e) => e.vm === FIRST), [], 'no revert_started for the first VM, ever')
  t.equal(reverts.filter((e) => e.vm === SECOND && Date.parse(e.ts) >= sent).length, 1, 'one revert of the second VM, not more')
  const statusFirst = await svc.get(`/api/v1/vms/${FIRST}/status`)
  t.equal(statusFirst.vm_name, FIRST, `GET /api/v1/vms/${FIRST}/status is about ${FIRST}`)
  t.equal(statusFirst.watchdog.state, 'healthy', 'the first VM is healthy')
  t.equal(statusFirst.watchdog.last_revert, null, 'the first VM has no last revert')
  t.equal(statusFirst.watchdog.counters.reverts, 0, 'the first VM\'s revert counter is 0')

  const windowBeats = beatsFirst.beats.filter((b) => b.at >= watchFrom && b.at <= watchTo)
  const seqs = beatsFirst.beats.map((b) => b.seq ?? -1)
  t.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), `the first guest's seq only went up (${seqs[0]}..${seqs.at(-1)}: never reverted)`)
  const gaps = windowBeats.slice(1).map((b, i) => b.at - windowBeats[i]!.at)
  // How regular the beats were depends on the machine's load; that it beat on is what counts.
  t.ok(windowBeats.length >= 2, `the first guest beat on through the second's hang and revert (${windowBeats.length} beats in ${watchTo - watchFrom} ms)`)
  t.comment(`longest gap between the first guest's beats seen: ${Math.max(0, ...gaps)} ms (heartbeat_timeout ${E2E_HEARTBEAT_TIMEOUT_S} s)`)

  const firstStates = new Set(states.samples.map((s) => s.states[FIRST]))
  const secondStates = new Set(states.samples.map((s) => s.states[SECOND]))
  // healthy, or at most late (the early warning at timeout / 2) on a loaded machine: never reverting.
  t.same([...firstStates].filter((s) => s !== 'healthy' && s !== 'late'), [], `GET /api/v1/vms showed the first VM healthy (or late) in all ${states.samples.length} samples during the second's hang and revert: ${[...firstStates].join(', ')}`)
  t.ok(secondStates.has('reverting') || secondStates.has('grace'), `the samples saw the second VM leave healthy (${[...secondStates].join(', ')})`)
  // The first VM's log: at most the early warning and back, never a revert.
  const firstChanges = svc.logs.filter((l) => l.vm === FIRST && typeof l.msg === 'string' && l.msg.startsWith('state:') && l.receivedAt >= watchFrom)
  t.same(firstChanges.map((l) => l.msg).filter((m) => m !== 'state: healthy -> late' && m !== 'state: late -> healthy'), [], `the service logged no state change of the first VM but the early warning (${firstChanges.length} lines)`)

  t.equal(await domainState(FIRST), 'running', 'the first VM runs')
  t.equal(await domainState(SECOND), 'running', 'the second VM runs again')
  const second = (await svc.get(`/api/v1/vms/${SECOND}/status`))
  t.equal(second.vm_name, SECOND, `GET /api/v1/vms/${SECOND}/status is about ${SECOND}`)
  t.equal(second.watchdog.state, 'healthy', 'the second VM is healthy again')
  t.notOk(svc.hasExited(), 'the service is still running')
  const events = (await svc.get(`/api/v1/vms/${SECOND}/events?limit=100`)).events as AuditEntryView[]
  t.ok(events.length > 0 && events.every((e) => e.vm === SECOND), `GET /api/v1/vms/${SECOND}/events has only the second VM's entries (${events.length})`)
  t.comment(`file total: ${Date.now() - fileStart} ms`)
}
