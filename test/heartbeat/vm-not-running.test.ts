// The pure machine (issue 12, a disk-only `ready`): a heartbeat while libvirt says the VM is not
// running (a tool on loopback) never makes the watchdog healthy, and a failed revert that left the
// VM off is not cancelled by such heartbeats. Fake clock: plain numbers.
import t from 'tap'
import { initialState, publicState, step, type MachineEvent, type WatchdogState } from '../../src/heartbeat/machine.ts'
import { SHORT_TIMING_SETTINGS as SETTINGS } from '../helpers/machine-settings.ts'

const T0 = 1_700_000_000_000

function machine () {
  let state: WatchdogState = initialState(null, T0, SETTINGS)
  let now = T0
  const feed = (event: MachineEvent, at = now) => {
    now = at
    const r = step(state, event, now, SETTINGS)
    state = r.state
    return r
  }
  return { feed, state: () => state, now: () => now, status: () => publicState(state, now) }
}

t.test('a failed revert that left the VM off: loopback heartbeats neither cancel the retry nor make it healthy', async (t) => {
  const m = machine()
  m.feed({ type: 'vm_state_known' })
  m.feed({ type: 'vm_state', running: true, reason: 'running/booted' })
  m.feed({ type: 'heartbeat' }, T0 + 1000)
  t.equal(m.status(), 'healthy')
  // No heartbeat for heartbeat_timeout: the revert starts.
  const r = m.feed({ type: 'tick' }, T0 + 11_000)
  t.match(r.actions.filter((a) => a.type === 'revert'), [{ reason: 'heartbeat_timeout' }])
  // The revert to a disk-only snapshot failed to bring the VM up: libvirt says it is off.
  m.feed({ type: 'revert_failed', error: 'the VM is still shutoff after the revert and a start', vmRunning: false }, T0 + 12_000)
  t.equal(m.state().vmRunning, false)
  // Heartbeats from loopback meanwhile.
  for (let i = 1; i <= 3; i++) {
    m.feed({ type: 'heartbeat', seq: i }, T0 + 12_000 + i * 1000)
    t.equal(m.status(), 'reverting', `heartbeat ${i}: still reverting, never healthy`)
  }
  t.equal(m.state().heartbeatsTotal, 4, 'every heartbeat is still counted')
  t.not(m.state().revert, null, 'the retry is still pending')
  // The retry runs at its time.
  const retry = m.feed({ type: 'tick' }, T0 + 17_000)
  t.match(retry.actions.filter((a) => a.type === 'revert'), [{ reason: 'heartbeat_timeout', attempt: 2 }])
  m.feed({ type: 'revert_finished', durationMs: 100 }, T0 + 17_500)
  t.equal(m.status(), 'grace')
  m.feed({ type: 'heartbeat', seq: 1 }, T0 + 18_000)
  t.equal(m.status(), 'healthy', 'after a revert that brought the VM up, a heartbeat is health again')
})

t.test('a failed revert that left the VM running: heartbeats still cancel a heartbeat-caused retry (as before)', async (t) => {
  const m = machine()
  m.feed({ type: 'vm_state_known' })
  m.feed({ type: 'vm_state', running: true, reason: 'running/booted' })
  m.feed({ type: 'heartbeat' }, T0 + 1000)
  m.feed({ type: 'tick' }, T0 + 11_000)
  m.feed({ type: 'revert_failed', error: 'libvirt refused', vmRunning: true }, T0 + 12_000)
  m.feed({ type: 'heartbeat', seq: 5 }, T0 + 13_000)
  t.equal(m.status(), 'healthy')
  t.equal(m.state().revert, null)
})

t.test('in maintenance with the VM off, heartbeats do not make the phase underneath healthy', async (t) => {
  const m = machine()
  m.feed({ type: 'vm_state_known' })
  m.feed({ type: 'vm_state', running: true, reason: 'running/booted' })
  m.feed({ type: 'stop_requested' }, T0 + 500)
  m.feed({ type: 'vm_state', running: false, reason: 'shutoff/destroyed' }, T0 + 600)
  m.feed({ type: 'heartbeat' }, T0 + 1000)
  t.equal(m.status(), 'maintenance')
  t.equal(m.state().phase, 'starting', 'the phase underneath is not healthy')
})
