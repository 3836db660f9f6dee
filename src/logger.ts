// pino: JSON lines to stdout (journald keeps them), pretty only when a person watches a terminal.
import pino, { type Logger } from 'pino'

export function createLogger (level: string, stream: NodeJS.WriteStream = process.stdout): Logger {
  const options = {
    level,
    base: { service: 'kiosk-vm-watchdog' },
    redact: { paths: ['req.headers.authorization', '*.admin_token', 'admin_token', '*.token'], censor: '[redacted]' }
  }
  if (stream.isTTY) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard', ignore: 'pid,hostname,service' } } })
  }
  return pino(options, stream)
}
