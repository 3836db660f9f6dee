// issue 14, failure 1: every line reached journald at priority 6. Under systemd, stdout is the
// journal stream named by JOURNAL_STREAM (device:inode); then each line must start with the
// syslog priority of its pino level, and only then (a pipe, a file, a terminal stays JSON).
import t from 'tap'
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, forJournal, isJournalStream, syslogPriority } from '../../src/logger.ts'

const dir = mkdtempSync(join(tmpdir(), 'kvw-logger-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function fileStream (name: string) {
  const path = join(dir, name)
  const fd = openSync(path, 'w')
  t.teardown(() => closeSync(fd))
  const s = fstatSync(fd)
  return {
    path,
    journal: `${s.dev}:${s.ino}`,
    stream: Object.assign(Object.create(null) as object, { fd, isTTY: false, write: (line: string) => { writeSync(fd, line); return true } }) as unknown as NodeJS.WritableStream & { fd: number }
  }
}

function logAll (log: ReturnType<typeof createLogger>): void {
  log.trace('t'); log.debug('d'); log.info('i'); log.warn('w'); log.error('e'); log.fatal('f')
}

t.test('levels map to syslog priorities journald understands', async (t) => {
  t.same([10, 20, 30, 40, 50, 60].map(syslogPriority), [7, 7, 6, 4, 3, 2])
  t.equal(syslogPriority(35), 6)
  t.equal(syslogPriority(70), 2)
})

t.test('stdout is the journal stream (JOURNAL_STREAM = its device:inode): <N> in front of each JSON line', async (t) => {
  const f = fileStream('journal.log')
  const saved = process.env['JOURNAL_STREAM']
  process.env['JOURNAL_STREAM'] = f.journal
  t.teardown(() => { if (saved === undefined) delete process.env['JOURNAL_STREAM']; else process.env['JOURNAL_STREAM'] = saved })
  logAll(createLogger('trace', f.stream))
  const lines = readFileSync(f.path, 'utf8').trim().split('\n')
  t.same(lines.map((l) => /^<(\d)>/.exec(l)?.[1]), ['7', '7', '6', '4', '3', '2'])
  for (const l of lines) t.match(JSON.parse(l.slice(3)), { service: 'kiosk-vm-watchdog' }, 'the rest is the usual JSON')
})

t.test('anything else stays plain JSON: no JOURNAL_STREAM, or one that names another stream', async (t) => {
  const saved = process.env['JOURNAL_STREAM']
  t.teardown(() => { if (saved === undefined) delete process.env['JOURNAL_STREAM']; else process.env['JOURNAL_STREAM'] = saved })
  const plain = fileStream('plain.log')
  delete process.env['JOURNAL_STREAM']
  logAll(createLogger('info', plain.stream))
  const other = fileStream('other.log')
  process.env['JOURNAL_STREAM'] = fileStream('elsewhere.log').journal // inherited by a child whose stdout was redirected
  logAll(createLogger('info', other.stream))
  for (const f of [plain, other]) {
    const lines = readFileSync(f.path, 'utf8').trim().split('\n')
    t.equal(lines.length, 4)
    for (const l of lines) t.ok(l.startsWith('{"level":'), l)
  }
})

t.test('isJournalStream and forJournal (the config error written before the logger exists)', async (t) => {
  const f = fileStream('x.log')
  t.equal(isJournalStream(f.stream.fd, { JOURNAL_STREAM: f.journal }), true)
  t.equal(isJournalStream(f.stream.fd, { JOURNAL_STREAM: '1:2' }), false)
  t.equal(isJournalStream(f.stream.fd, { JOURNAL_STREAM: 'garbage' }), false)
  t.equal(isJournalStream(f.stream.fd, {}), false)
  t.equal(isJournalStream(9999, { JOURNAL_STREAM: f.journal }), false)
  t.equal(forJournal('bad config\nheartbeat_timeout: not a number\n', 3, true), '<3>bad config\n<3>heartbeat_timeout: not a number\n')
  t.equal(forJournal('bad config\n', 3, false), 'bad config\n')
})
