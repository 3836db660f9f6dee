// The data-directory lock (src/store/lock.ts) in a scratch directory: one holder at a time, a
// stale lock taken over, never two holders however the starts interleave.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirLockedError, LOCK_FILE, lockDataDir } from '../../src/store/lock.ts'

/** A PID that was alive a moment ago and is not now. */
function deadPid (): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!
}

t.test('a live holder keeps it; a release frees it; no helper files stay behind', async (t) => {
  const dir = t.testdir()
  const first = await lockDataDir(dir, process.ppid)
  await t.rejects(lockDataDir(dir, process.pid), DataDirLockedError, 'the second starter is refused')
  t.match(readFileSync(join(dir, LOCK_FILE), 'utf8'), new RegExp(`^${process.ppid} `), 'the lock still names the first')
  t.same(readdirSync(dir), [LOCK_FILE], 'no temporary files left')
  await first.release()
  const second = await lockDataDir(dir, process.pid)
  t.match(readFileSync(join(dir, LOCK_FILE), 'utf8'), new RegExp(`^${process.pid} `))
  await second.release()
  t.same(readdirSync(dir), [])
})

t.test('a lock left by a dead process, or an empty one, is taken over', async (t) => {
  for (const stale of [`${deadPid()} 12345\n`, '']) {
    const dir = t.testdir()
    writeFileSync(join(dir, LOCK_FILE), stale)
    const lock = await lockDataDir(dir, process.pid)
    t.match(readFileSync(join(dir, LOCK_FILE), 'utf8'), new RegExp(`^${process.pid} `), `taken over from ${JSON.stringify(stale)}`)
    t.same(readdirSync(dir), [LOCK_FILE])
    await lock.release()
  }
})

t.test('two starters at once, on a free or a stale lock: exactly one holds it', async (t) => {
  for (let round = 0; round < 20; round++) {
    const dir = t.testdir()
    if (round % 2 === 1) writeFileSync(join(dir, LOCK_FILE), `${deadPid()} 1\n`)
    const results = await Promise.allSettled([lockDataDir(dir, process.pid), lockDataDir(dir, process.ppid)])
    const won = results.filter((r) => r.status === 'fulfilled')
    t.equal(won.length, 1, `round ${round}: one winner`)
    const lost = results.find((r) => r.status === 'rejected')
    t.ok(lost?.status === 'rejected' && lost.reason instanceof DataDirLockedError, `round ${round}: the other is told who holds it`)
    t.same(readdirSync(dir), [LOCK_FILE], `round ${round}: only the lock file`)
  }
})
