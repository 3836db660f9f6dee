// systemd's notify protocol (sd_notify(3)) through libsystemd, loaded with koffi. Under
// `Type=notify` systemd waits for READY=1 before it calls the service started, and with
// `WatchdogSec=` it restarts the service when WATCHDOG=1 stops arriving. Outside systemd
// (NOTIFY_SOCKET unset: a terminal, tests, Docker) every call is a no-op.
//
// Only two C functions are declared: a wrong koffi signature crashes the process instead of
// throwing, and test/systemd/notify.test.ts exercises both.
import koffi from 'koffi'
import { realTimers, systemClock, type Clock, type Log, type TimerPort } from '../ports/index.ts'

export interface Notifier {
  /** True when NOTIFY_SOCKET is set and libsystemd is loaded: messages really go out. */
  readonly enabled: boolean
  /** READY=1: start-up is complete (listening, libvirt connected). */
  ready (status?: string): void
  /** STATUS=…: the one line `systemctl status` shows. */
  status (text: string): void
  /** STOPPING=1: shutdown began (the VM is left running). */
  stopping (): void
  /** The watchdog timeout systemd set for this process (WatchdogSec=), or null when there is none. */
  watchdogIntervalMs (): number | null
  /**
   * Sends WATCHDOG=1 every half interval while isHealthy() says so. Returns a function that stops it.
   * The pings run on the event loop, so a blocked loop stops them and systemd restarts the service.
   */
  startWatchdog (isHealthy: () => boolean): () => void
}

interface SystemdFfi {
  sdNotify: (unsetEnvironment: number, state: string) => number
  sdWatchdogEnabled: (unsetEnvironment: number, usec: [number]) => number
}

export const LIBSYSTEMD = 'libsystemd.so.0'

export interface NotifierOptions {
  /** The library to load; tests name a missing one to check the fallback. */
  library?: string
  /** The ping timer (default: real, unref'd) and the clock; tests pass a fake clock for both. */
  timers?: TimerPort
  clock?: Clock
}

export function createNotifier (log: Pick<Log, 'debug' | 'warn'>, options: NotifierOptions = {}): Notifier {
  const socket = process.env['NOTIFY_SOCKET']
  if (!socket) {
    log.debug({}, 'systemd notify: NOTIFY_SOCKET is not set (not run by systemd with Type=notify); notifications are off')
    return disabledNotifier()
  }
  const library = options.library ?? LIBSYSTEMD
  let sd: SystemdFfi
  try {
    sd = load(library)
  } catch (err) {
    // Under Type=notify this means systemd never hears READY=1 and stops the service at
    // TimeoutStartSec: say so loudly, but keep running.
    log.warn({ err, library, socket }, `systemd notify: cannot load ${library} (apt-get install libsystemd0); systemd will not hear READY=1 or watchdog pings`)
    return disabledNotifier()
  }

  let failureLogged = false
  // sd_notify(3) is one datagram sent to a local socket that systemd drains; it does not wait
  // for an answer, so a synchronous call costs microseconds. Synchronous is also what the
  // watchdog needs: a ping that is sent proves the event loop itself is running, and STOPPING=1
  // is out before the process exits.
  const send = (state: string): void => {
    const rc = sd.sdNotify(0, state)
    if (rc < 0 && !failureLogged) {
      failureLogged = true
      log.warn({ errno: -rc, socket, state: state.split('\n')[0] }, 'systemd notify: sending to NOTIFY_SOCKET failed (logged once)')
    } else if (rc > 0) {
      failureLogged = false
    }
  }

  const watchdogIntervalMs = (): number | null => {
    // sd_watchdog_enabled reads WATCHDOG_USEC and checks WATCHDOG_PID against our pid, so a
    // child process that inherited the environment does not ping for its parent.
    const usec: [number] = [0]
    const rc = sd.sdWatchdogEnabled(0, usec)
    if (rc <= 0) return null
    return Math.max(1, Math.floor(Number(usec[0]) / 1000))
  }

  return {
    enabled: true,
    ready (status?: string) {
      send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`)
    },
    status (text: string) {
      send(`STATUS=${oneLine(text)}`)
    },
    stopping () {
      send('STOPPING=1')
    },
    watchdogIntervalMs,
    startWatchdog (isHealthy: () => boolean) {
      const interval = watchdogIntervalMs()
      if (interval === null) {
        log.debug({}, 'systemd notify: no watchdog requested (WatchdogSec= unset or WATCHDOG_PID is another process)')
        return () => {}
      }
      const period = Math.max(1, Math.floor(interval / 2))
      log.debug({ intervalMs: interval, pingEveryMs: period }, 'systemd notify: watchdog pings on')
      const timers = options.timers ?? realTimers
      const clock = options.clock ?? systemClock
      let timer: unknown = null
      let stopped = false
      let unhealthySince: number | null = null
      const tick = (): void => {
        if (stopped) return
        let healthy: boolean
        try {
          healthy = isHealthy()
        } catch (err) {
          healthy = false
          log.warn({ err }, 'systemd notify: the health check threw; counted as unhealthy')
        }
        if (healthy) {
          if (unhealthySince !== null) log.warn({ unhealthyMs: clock.now() - unhealthySince }, 'systemd notify: healthy again; watchdog pings resume')
          unhealthySince = null
          send('WATCHDOG=1')
        } else if (unhealthySince === null) {
          unhealthySince = clock.now()
          log.warn({ intervalMs: interval }, 'systemd notify: unhealthy; watchdog pings withheld, systemd restarts the service if this lasts')
        }
        // Re-armed after each run rather than setInterval: a loop that stalls does not get a
        // burst of catch-up pings afterwards. realTimers are unref'd: the pings never keep the process alive.
        timer = timers.setTimeout(tick, period)
      }
      timer = timers.setTimeout(tick, 0)
      return () => {
        stopped = true
        if (timer !== null) timers.clearTimeout(timer)
      }
    }
  }
}

function load (library: string): SystemdFfi {
  const lib = koffi.load(library)
  const sdNotify = lib.func('int sd_notify(int unset_environment, const char *state)')
  const sdWatchdogEnabled = lib.func('int sd_watchdog_enabled(int unset_environment, _Out_ uint64_t *usec)')
  return {
    sdNotify: (unsetEnvironment, state) => sdNotify(unsetEnvironment, state) as number,
    sdWatchdogEnabled: (unsetEnvironment, usec) => sdWatchdogEnabled(unsetEnvironment, usec) as number
  }
}

/** A newline would start another assignment in the datagram: STATUS must stay one line. */
function oneLine (text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 1000)
}

function disabledNotifier (): Notifier {
  return {
    enabled: false,
    ready () {},
    status () {},
    stopping () {},
    watchdogIntervalMs: () => null,
    startWatchdog: () => () => {}
  }
}
