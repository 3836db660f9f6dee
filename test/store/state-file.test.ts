// StateFile in a scratch directory: real files, real renames.
import t from 'tap'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { StateFile, StoreError, vmStatePath } from '../../src/store/index.ts'

interface State { revision: number, note?: string }

function capturingLog () {
  const warnings: Array<{ obj: object, msg: string }> = []
  return { warnings, log: { warn (obj: object, msg: string) { warnings.push({ obj, msg }) } } }
}

t.test('save then load in a fresh instance returns the value; missing file is null', async (t) => {
  const dir = t.testdir()
  const path = vmStatePath(dir, 'exhibit-1')
  t.equal(path, join(dir, 'state', 'exhibit-1.json'))
  t.equal(await new StateFile<State>(path).load(), null, 'nothing saved yet')
  await new StateFile<State>(path).save({ revision: 1, note: 'ünïcode ✓' })
  t.same(await new StateFile<State>(path).load(), { revision: 1, note: 'ünïcode ✓' })
  t.same(JSON.parse(await readFile(path, 'utf8')), { revision: 1, note: 'ünïcode ✓' }, 'plain JSON on disk')
})

t.test('concurrent saves never interleave and the last one wins', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'state', 'vm.json')
  const file = new StateFile<State>(path)
  const note = 'x'.repeat(100_000) // large enough that interleaved writes would show
  await Promise.all(Array.from({ length: 50 }, (_, i) => file.save({ revision: i, note })))
  t.same(await new StateFile<State>(path).load(), { revision: 49, note })
  t.same(await readdir(join(dir, 'state')), ['vm.json'], 'saves waiting together were written once (the newest): no backup, no temporary files')

  // Saves issued while another is being written are written after it, in order.
  const saves: Array<Promise<void>> = []
  for (let i = 100; i < 110; i++) {
    saves.push(file.save({ revision: i }))
    await new Promise((resolve) => setImmediate(resolve)) // let the write of the previous one start
  }
  await Promise.all(saves)
  t.same(await new StateFile<State>(path).load(), { revision: 109 })
  const backup = JSON.parse(await readFile(`${path}.bak`, 'utf8')) as State
  t.ok(backup.revision >= 49 && backup.revision < 109, `the backup holds an earlier save (${backup.revision})`)
  t.same((await readdir(join(dir, 'state'))).sort(), ['vm.json', 'vm.json.bak'], 'no temporary files left behind')
})

t.test('a damaged file falls back to the backup, then to null, with a warning, never a throw', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'vm.json')
  const file = new StateFile<State>(path)
  await file.save({ revision: 1 })
  await file.save({ revision: 2 })
  t.same(JSON.parse(await readFile(`${path}.bak`, 'utf8')), { revision: 1 })

  await writeFile(path, '{"revision": 3, "no') // half-written by something else
  const a = capturingLog()
  t.same(await new StateFile<State>(path, { log: a.log }).load(), { revision: 1 }, 'the backup')
  t.match(a.warnings.map((w) => w.msg).join('\n'), /damaged[\s\S]*backup/)
  t.match(a.warnings[0]?.obj, { path, problem: /not JSON/ })

  await writeFile(`${path}.bak`, '')
  const b = capturingLog()
  t.equal(await new StateFile<State>(path, { log: b.log }).load(), null)
  t.match(b.warnings.at(-1)?.obj, { path: `${path}.bak`, problem: 'empty file' })

  // After a damaged load, saving works again and does not copy the damage into the backup.
  const fresh = new StateFile<State>(path)
  t.equal(await fresh.load(), null)
  await fresh.save({ revision: 4 })
  t.same(await new StateFile<State>(path).load(), { revision: 4 })
  t.equal(await readFile(`${path}.bak`, 'utf8'), '', 'the damaged text did not become the backup')
})

t.test('parse() rejects content of the wrong shape: treated as damaged', async (t) => {
  const dir = t.testdir({ 'vm.json': '{"revision":"not a number"}', 'vm.json.bak': '{"revision":7}' })
  const parse = (value: unknown): State => {
    const v = value as State
    if (typeof v?.revision !== 'number') throw new Error('revision must be a number')
    return v
  }
  const { log, warnings } = capturingLog()
  t.same(await new StateFile<State>(join(dir, 'vm.json'), { parse, log }).load(), { revision: 7 })
  t.match(warnings[0]?.obj, { problem: /revision must be a number/ })
})

t.test('a data dir that cannot be created: a clear error naming the path', async (t) => {
  const dir = t.testdir({ 'not-a-dir': 'a regular file' })
  const path = join(dir, 'not-a-dir', 'state', 'vm.json')
  const err = await new StateFile<State>(path).save({ revision: 1 }).then(() => null, (e: unknown) => e)
  t.type(err, StoreError)
  t.match((err as StoreError).message, `${join(dir, 'not-a-dir', 'state')}`)
  t.match((err as StoreError).message, /is a file, not a directory/)
  t.equal((err as StoreError).errno, 'ENOTDIR')
  // load() of such a path is not an error: there is simply no state.
  t.equal(await new StateFile<State>(path).load(), null)
})

t.test('a value that is not JSON is refused clearly', async (t) => {
  const dir = t.testdir()
  const file = new StateFile<unknown>(join(dir, 'vm.json'))
  await t.rejects(file.save({ big: 1n }), { name: 'StoreError', message: /not JSON/ })
  await file.save({ ok: true })
  t.same(await file.load(), { ok: true }, 'the queue keeps working after a refused save')
  t.throws(() => new StateFile(''), TypeError)
})
