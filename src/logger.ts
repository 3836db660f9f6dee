// pino: JSON lines to stdout (journald keeps them), pretty only when a person watches a terminal.
// Under systemd, stdout is a stream to journald (JOURNAL_STREAM names it): each line then starts
// with a `<N>` syslog priority, which journald strips and files as PRIORITY= (SyslogLevelPrefix=,
// on by default), so `journalctl -p err` shows the service's errors. The rest of the line, the
// journal's MESSAGE, is the same JSON as anywhere else.
import { fstatSync } from 'node:fs'
import pino, { type DestinationStream, type Logger } from 'pino'

/** pino's numeric levels to syslog priorities (sd-daemon(3): `<3>` error ... `<7>` debug). */
export const SYSLOG_PRIORITY: Readonly<Record<number, number>> = {
  10: 7, // trace: debug
  20: 7, // debug: debug
  30: 6, // info: info
  40: 4, // warn: warning
  50: 3, // error: err
  60: 2 // fatal: crit
}

export function syslogPriority (pinoLevel: number): number {
  return SYSLOG_PRIORITY[pinoLevel] ?? (pinoLevel >= 60 ? 2 : pinoLevel >= 50 ? 3 : pinoLevel >= 40 ? 4 : pinoLevel >= 30 ? 6 : 7)
}

/**
 * Whether file descriptor `fd` is the journald stream systemd connected (systemd.exec(5):
 * JOURNAL_STREAM=DEVICE:INODE of that stream). Compared, not just present: a child whose stdout
 * was redirected to a file or pipe inherits the variable but must not prefix.
 */
export function isJournalStream (fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env['JOURNAL_STREAM']
  const m = value === undefined ? null : /^(\d+):(\d+)$/.exec(value)
  if (!m) return false
  try {
    const s = fstatSync(fd, { bigint: true })
    return s.dev === BigInt(m[1]!) && s.ino === BigInt(m[2]!)
  } catch {
    return false
  }
}

/** Text for stderr before the logger exists (e.g. an invalid config), with a priority per line when stderr is journald. */
export function forJournal (text: string, priority: number, journal: boolean): string {
  if (!journal) return text
  return text.split('\n').map((line, i, all) => i === all.length - 1 && line === '' ? '' : `<${priority}>${line}`).join('\n')
}

/** Puts `<N>` in front of each pino line (one line per write; the level is its first key). */
export function journalDestination (stream: DestinationStream): DestinationStream {
  return {
    write (line: string) {
      const m = /^\{"level":(\d+)/.exec(line)
      stream.write(`<${m ? syslogPriority(Number(m[1])) : 6}>${line}`)
    }
  }
}

export interface LoggerOptions {
  /** Prefix syslog priorities; default: stdout is the journald stream (JOURNAL_STREAM). */
  journal?: boolean
}

export function createLogger (level: string, stream: NodeJS.WritableStream & { isTTY?: boolean, fd?: number } = process.stdout, options: LoggerOptions = {}): Logger {
  const base = {
    level,
    base: { service: 'kiosk-vm-watchdog' },
    redact: { paths: ['req.headers.authorization', '*.admin_token', 'admin_token', '*.token'], censor: '[redacted]' }
  }
  const journal = options.journal ?? (typeof stream.fd === 'number' && isJournalStream(stream.fd))
  if (journal) return pino(base, journalDestination(stream))
  if (stream.isTTY) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard', ignore: 'pid,hostname,service' } } })
  }
  return pino(base, stream)
}
