// AuditLog in a scratch directory: real appends, real rotation, real large files.
import t from 'tap'
import { appendFile, open, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AuditLog, StoreError, type AuditEntry } from '../../src/store/index.ts'

const T0 = Date.parse('2026-01-01T00:00:00.000Z')

function clock (start = T0) {
  let now = start
  return { now: () => now, advance (ms: number) { now += ms } }
}

async function lines (path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l.length > 0)
}

t.test('append and read back: newest first, with filters and limit', async (t) => {
  const dir = t.testdir()
  const c = clock()
  const audit = new AuditLog({ dir, now: c.now })
  t.teardown(() => audit.close())
  t.same(await audit.read({ limit: 10 }), [], 'no file yet: no entries')

  for (let i = 0; i < 6; i++) {
    await audit.append({ vm: i % 2 === 0 ? 'a' : 'b', kind: i % 3 === 0 ? 'revert' : 'heartbeat_timeout', reason: `r${i}`, source: 'watchdog', outcome: 'ok', durationMs: i * 100, extra: { n: i } })
    c.advance(1000)
  }
  const all = await audit.read({ limit: 100 })
  t.same(all.map((e) => e.reason), ['r5', 'r4', 'r3', 'r2', 'r1', 'r0'])
  t.same(all[5], { ts: '2026-01-01T00:00:00.000Z', vm: 'a', kind: 'revert', reason: 'r0', source: 'watchdog', outcome: 'ok', durationMs: 0, extra: { n: 0 } })
  t.same((await audit.read({ limit: 2 })).map((e) => e.reason), ['r5', 'r4'])
  t.same((await audit.read({ vm: 'a' })).map((e) => e.reason), ['r4', 'r2', 'r0'])
  t.same((await audit.read({ kind: 'revert' })).map((e) => e.reason), ['r3', 'r0'])
  t.same((await audit.read({ vm: 'b', kind: 'revert' })).map((e) => e.reason), ['r3'])
  t.same((await audit.read({ before: '2026-01-01T00:00:03.000Z' })).map((e) => e.reason), ['r2', 'r1', 'r0'], 'before is strict')
  t.same((await audit.read({ before: new Date(T0 + 1000), limit: 5 })).map((e) => e.reason), ['r0'])

  const first = JSON.parse((await lines(join(dir, 'audit.jsonl')))[0] ?? '') as AuditEntry
  t.same(Object.keys(first).slice(0, 3), ['ts', 'vm', 'kind'], 'ts, vm, kind lead each line')

  await audit.append({ vm: 'a', kind: 'manual', ts: '2025-06-01T12:00:00Z' })
  t.equal((await audit.read({ limit: 1 }))[0]?.ts, '2025-06-01T12:00:00.000Z', 'a given ts is kept (normalized)')
})

t.test('bad input is refused with a clear error', async (t) => {
  const audit = new AuditLog({ dir: t.testdir() })
  t.teardown(() => audit.close())
  await t.rejects(audit.append({ kind: 'x' } as never), { name: 'TypeError', message: /needs vm/ })
  await t.rejects(audit.append({ vm: 'a', kind: '' }), { name: 'TypeError', message: /needs kind/ })
  await t.rejects(audit.append({ vm: 'a', kind: 'x', ts: 'yesterday' }), { message: /ts is not a valid time/ })
  await t.rejects(audit.append({ vm: 'a', kind: 'x', n: 1n }), { name: 'TypeError', message: /not JSON/ })
  await t.rejects(audit.read({ limit: 0 }), { message: /limit must be an integer/ })
  await t.rejects(audit.read({ before: 'soon' }), { message: /before is not a valid time/ })
  t.throws(() => new AuditLog({}), TypeError)
  await audit.append({ vm: 'a', kind: 'ok' })
  t.equal((await audit.read()).length, 1, 'refusals left the log usable')
})

t.test('concurrent appends: every entry is one whole line', async (t) => {
  const dir = t.testdir()
  const audit = new AuditLog({ dir, sync: false })
  t.teardown(() => audit.close())
  const detail = 'y'.repeat(5000)
  await Promise.all(Array.from({ length: 500 }, (_, i) => audit.append({ vm: 'a', kind: 'k', i, detail })))
  const parsed = (await lines(join(dir, 'audit.jsonl'))).map((l) => JSON.parse(l) as { i: number })
  t.equal(parsed.length, 500)
  t.same(parsed.map((e) => e.i), Array.from({ length: 500 }, (_, i) => i), 'in call order')
})

t.test('a torn last line is skipped and counted; the next append starts a new line', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'audit.jsonl')
  const good = (i: number) => JSON.stringify({ ts: new Date(T0 + i).toISOString(), vm: 'a', kind: 'k', i }) + '\n'
  await writeFile(path, good(1) + good(2) + '{"ts":"2026-01-01T00:00:00.003Z","vm":"a","ki')

  const warnings: string[] = []
  const audit = new AuditLog({ dir, log: { warn: (_o, msg) => { warnings.push(msg) } }, now: () => T0 + 10 })
  t.teardown(() => audit.close())
  const result = await audit.query({})
  t.same(result.entries.map((e) => e.i), [2, 1])
  t.equal(result.skipped, 1)

  await audit.append({ vm: 'a', kind: 'k', i: 4 })
  t.match(warnings.join('\n'), /torn line/)
  const after = await audit.query({})
  t.same(after.entries.map((e) => e.i), [4, 2, 1], 'the new entry survived')
  t.equal(after.skipped, 1, 'the torn line stays one skipped line')
  t.match((await readFile(path, 'utf8')).split('\n')[2], /"ki$/, 'the torn line is left as it was, on its own line')
})

t.test('garbage lines anywhere are skipped and counted, not fatal', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'audit.jsonl')
  const entry = (i: number, vm = 'a') => JSON.stringify({ ts: new Date(T0 + i).toISOString(), vm, kind: 'k', i })
  await writeFile(path, [
    entry(1), 'not json at all', '[1,2,3]', '{"vm":"a","kind":"k"}', '{"ts":"never","vm":"a","kind":"k"}', '\u0000\u0000\u0000',
    entry(2), '', '', entry(3, 'b'), '{"ts":"2026-01-01T00:00:00.000Z","vm":"a","kind":"k","i":', entry(4)
  ].join('\n') + '\n')
  const audit = new AuditLog({ dir })
  t.teardown(() => audit.close())
  const result = await audit.query({ limit: 100 })
  t.same(result.entries.map((e) => e.i), [4, 3, 2, 1])
  t.equal(result.skipped, 6)
  // A filtered read only examines lines that can match: fewer lines to count.
  t.same((await audit.query({ vm: 'b' })).entries.map((e) => e.i), [3])
  t.same(await audit.read({ vm: 'c' }), [])
})

t.test('lines longer than a read chunk, and chunk boundaries inside lines', async (t) => {
  const dir = t.testdir()
  const audit = new AuditLog({ dir, chunkBytes: 16, sync: false })
  t.teardown(() => audit.close())
  const expected: number[] = []
  for (let i = 0; i < 200; i++) {
    await audit.append({ vm: 'a', kind: 'k', i, pad: 'é'.repeat(i % 37) }) // multi-byte characters across boundaries
    expected.unshift(i)
  }
  const result = await audit.query({ limit: 1000 })
  t.same(result.entries.map((e) => e.i), expected)
  t.equal(result.skipped, 0)
  t.same((await audit.read({ limit: 3 })).map((e) => e.pad), ['é'.repeat(199 % 37), 'é'.repeat(198 % 37), 'é'.repeat(197 % 37)])
})

t.test('reading the newest entries of a 200k-line file reads only its end; a filter reads back only as far as it must', async (t) => {
  // How long these reads take is measured by bench/audit.ts (`npm run bench:audit`); here: how much is read.
  const dir = t.testdir()
  const path = join(dir, 'audit.jsonl')
  const handle = await open(path, 'w')
  const batch: string[] = []
  const lineBytes: number[] = [] // bytes of line i, newline included
  for (let i = 0; i < 200_000; i++) {
    const line = JSON.stringify({ ts: new Date(T0 + i * 1000).toISOString(), vm: i === 10 ? 'rare' : `vm${i % 3}`, kind: i % 10 === 0 ? 'revert' : 'heartbeat_timeout', reason: 'no heartbeat for 15 s', source: 'watchdog', outcome: 'ok', durationMs: 1234, i })
    batch.push(line)
    lineBytes.push(Buffer.byteLength(line) + 1)
    if (batch.length === 10_000) {
      await handle.write(batch.join('\n') + '\n')
      batch.length = 0
    }
  }
  await handle.close()
  const { size } = await stat(path)
  t.ok(size > 20_000_000, `file is ${(size / 1e6).toFixed(1)} MB`)
  /** Bytes from the start of line `first` to the end of the file. */
  const tailBytes = (first: number) => lineBytes.slice(first).reduce((a, b) => a + b, 0)
  const CHUNK = 64 * 1024 // AuditLog's default read chunk

  const audit = new AuditLog({ dir })
  t.teardown(() => audit.close())
  const newest = await audit.query({ limit: 100 })
  t.same(newest.entries.map((e) => e.i), Array.from({ length: 100 }, (_, k) => 199_999 - k))
  t.ok(newest.bytesRead >= tailBytes(199_900), 'read the 100 newest lines')
  t.ok(newest.bytesRead <= tailBytes(199_900) + CHUNK, `read ${newest.bytesRead} bytes: those lines and at most one chunk more, not the file`)

  // revert and vm1: every 30th line (i % 30 === 10); the 50th match back is line 199_990 - 49 * 30.
  const reverts = await audit.query({ limit: 50, kind: 'revert', vm: 'vm1' })
  t.same(reverts.entries.map((e) => e.i).slice(0, 3), [199_990, 199_960, 199_930], 'filtered newest first')
  t.equal(reverts.entries.length, 50)
  t.equal(reverts.entries.at(-1)?.i, 198_520, 'the 50th match')
  t.ok(reverts.bytesRead >= tailBytes(198_520), 'read back to the 50th match')
  t.ok(reverts.bytesRead <= tailBytes(198_520) + CHUNK, `read ${reverts.bytesRead} bytes: back to the 50th match and at most one chunk more`)

  const rare = await audit.query({ vm: 'rare' })
  t.same(rare.entries.map((e) => e.i), [10], 'a filter matching one old line scans the whole file')
  t.equal(rare.bytesRead, size)
})

t.test('rotation: the file is renamed to .1, older ones shift, at most keepFiles kept; reads continue into them', async (t) => {
  const dir = t.testdir()
  const c = clock()
  const audit = new AuditLog({ dir, maxBytes: 1000, keepFiles: 2, now: c.now, sync: false })
  t.teardown(() => audit.close())
  for (let i = 0; i < 60; i++) {
    await audit.append({ vm: 'a', kind: 'k', i, pad: 'p'.repeat(40) }) // ~100 bytes a line: ~10 a file
    c.advance(1)
  }
  t.same((await readdir(dir)).sort(), ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2'])
  for (const name of ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']) {
    const { size } = await stat(join(dir, name))
    t.ok(size > 0 && size <= 1000, `${name} is ${size} bytes, within maxBytes`)
  }
  const newestInCurrent = (await lines(join(dir, 'audit.jsonl'))).map((l) => (JSON.parse(l) as { i: number }).i)
  const inOne = (await lines(join(dir, 'audit.jsonl.1'))).map((l) => (JSON.parse(l) as { i: number }).i)
  t.equal(inOne.at(-1), (newestInCurrent[0] ?? 0) - 1, '.1 ends where the current file begins')
  t.equal(newestInCurrent.at(-1), 59)

  const all = await audit.read({ limit: 1000 })
  t.same(all.map((e) => e.i), Array.from({ length: all.length }, (_, k) => 59 - k), 'newest first across files, no gaps')
  t.ok(all.length > newestInCurrent.length + inOne.length, 'reached into .2')
  t.ok(all.length < 60, 'the oldest entries were dropped with the oldest file')
  t.same((await audit.read({ limit: 1000, includeRotated: false })).map((e) => e.i), [...newestInCurrent].reverse(), 'current file only when asked')
})

t.test('keepFiles 0 drops the old file; a reopened log appends after existing content', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'audit.jsonl')
  await appendFile(path, JSON.stringify({ ts: new Date(T0).toISOString(), vm: 'a', kind: 'old' }) + '\n')
  const audit = new AuditLog({ path, maxBytes: 200, keepFiles: 0, now: () => T0 })
  await audit.append({ vm: 'a', kind: 'new' })
  t.same((await audit.read()).map((e) => e.kind), ['new', 'old'])
  for (let i = 0; i < 5; i++) await audit.append({ vm: 'a', kind: 'more', pad: 'q'.repeat(60) })
  t.same(await readdir(dir), ['audit.jsonl'], 'no rotated files with keepFiles 0')
  await audit.close()
  await audit.append({ vm: 'a', kind: 'after_close' })
  t.equal((await audit.read({ limit: 1 }))[0]?.kind, 'after_close', 'appends after close still land')
})

t.test('a data dir that cannot be created: a clear error naming the path', async (t) => {
  const dir = t.testdir({ file: 'not a directory' })
  const audit = new AuditLog({ dir: join(dir, 'file', 'data') })
  const err = await audit.append({ vm: 'a', kind: 'k' }).then(() => null, (e: unknown) => e)
  t.type(err, StoreError)
  t.match((err as Error).message, join(dir, 'file', 'data'))
  t.match((err as Error).message, /check data_dir/)
  t.same(await audit.read(), [], 'reading a log that cannot exist is empty, not an error')
})
