// Read times of the audit trail (src/store/audit-log.ts) on a large file: the newest 100 entries,
// a filtered read that must go back ~1500 lines, and a filter that matches one old line (a scan of
// the whole file). The same 200k-line file as test/store/audit-log.test.ts, which asserts how much
// each read reads; this script says how long that takes. Prints numbers, no pass/fail.
//   node --import tsx bench/audit.ts [--runs 20] [--lines 200000]
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { AuditLog, type AuditQuery } from '../src/store/index.ts'
import { describe, line, loadNote, stats } from './lib.ts'

const { values } = parseArgs({ options: { runs: { type: 'string' }, lines: { type: 'string' } } })
const runs = values.runs === undefined ? 20 : Number(values.runs)
const lineCount = values.lines === undefined ? 200_000 : Number(values.lines)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number >= 1, got ${String(values.runs)}`)
if (!Number.isInteger(lineCount) || lineCount < 100) throw new Error(`--lines must be a whole number >= 100, got ${String(values.lines)}`)

const T0 = Date.parse('2026-01-01T00:00:00.000Z')
const dir = await mkdtemp(join(tmpdir(), 'kvw-bench-audit-'))
try {
  const handle = await open(join(dir, 'audit.jsonl'), 'w')
  const batch: string[] = []
  for (let i = 0; i < lineCount; i++) {
    batch.push(JSON.stringify({ ts: new Date(T0 + i * 1000).toISOString(), vm: i === 10 ? 'rare' : `vm${i % 3}`, kind: i % 10 === 0 ? 'revert' : 'heartbeat_timeout', reason: 'no heartbeat for 15 s', source: 'watchdog', outcome: 'ok', durationMs: 1234, i }))
    if (batch.length === 10_000 || i === lineCount - 1) {
      await handle.write(batch.join('\n') + '\n')
      batch.length = 0
    }
  }
  await handle.close()
  const { size } = await stat(join(dir, 'audit.jsonl'))

  const audit = new AuditLog({ dir })
  const cases: Array<{ label: string, query: AuditQuery }> = [
    { label: 'newest 100', query: { limit: 100 } },
    { label: 'newest 50 revert of vm1 (1 line in 30)', query: { limit: 50, kind: 'revert', vm: 'vm1' } },
    { label: 'vm rare (1 old line: whole-file scan)', query: { vm: 'rare' } }
  ]
  console.log(`audit log: ${lineCount} lines, ${(size / 1e6).toFixed(1)} MB; ${runs} runs each (after one warm-up); ${loadNote()}`)
  for (const { label, query } of cases) {
    const samples: number[] = []
    let bytesRead = 0
    for (let run = 0; run <= runs; run++) {
      const started = performance.now()
      const result = await audit.query(query)
      const elapsed = performance.now() - started
      if (run > 0) samples.push(elapsed) // run 0 warms the page cache and the JIT
      bytesRead = result.bytesRead
    }
    const s = stats(samples)
    console.log(line(label, `${describe(s)}  read ${bytesRead} bytes`))
  }
  await audit.close()
  console.log(loadNote())
} finally {
  await rm(dir, { recursive: true, force: true })
}
