// The frozen-screen sampler with a fake clock and a scripted screen: frames that change, then a
// frozen one (with a blinking cursor), give exactly one revert request, screen_frozen.
import t, { type Test } from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Screenshot } from '../../src/libvirt/types.ts'
import { screenSchema } from '../../src/screen/config.ts'
import { encodePng } from '../../src/screen/png.ts'
import { loadErrorImages, ScreenSampler, SCREEN_REVERT_SOURCE } from '../../src/screen/sampler.ts'
import { FakeClock } from '../helpers/fake-clock.ts'

const W = 320
const H = 240

/** A PPM screen as QEMU sends it: vertical bands shifted by `shift`, a cursor that blinks. */
function frame (shift: number, cursorOn = false, dialog = false): Screenshot {
  const pixels = Buffer.alloc(W * H * 3)
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let v = ((x + shift) >> 4) & 1 ? 180 : 60
      if (cursorOn && x >= 40 && x < 44 && y >= 40 && y < 48) v = 255
      if (dialog && x >= 80 && x < 240 && y >= 60 && y < 180) v = y < 80 ? 20 : 230
      const p = (y * W + x) * 3
      pixels[p] = v; pixels[p + 1] = v; pixels[p + 2] = v
    }
  }
  return { mimeType: 'image/x-portable-pixmap', data: Buffer.concat([Buffer.from(`P6\n${W} ${H}\n255\n`), pixels]) }
}

interface Harness {
  clock: FakeClock
  sampler: ScreenSampler
  requests: Array<{ reason: string, source: string, at: number }>
  shots: number[]
  watchdog: { state: string }
  /** What the screen shows at a given time since start (ms). */
  screen: (elapsed: number) => Screenshot | Error
  run: (seconds: number) => Promise<void>
}

function harness (t: Test, config: Record<string, unknown>, screen: (elapsed: number) => Screenshot | Error, errorImages = [] as ReturnType<typeof loadErrorImages>): Harness {
  const start = Date.parse('2026-11-23T10:00:00Z')
  const clock = new FakeClock(start)
  const requests: Harness['requests'] = []
  const shots: number[] = []
  const watchdog = { state: 'healthy' }
  const h: Harness = {
    clock,
    requests,
    shots,
    watchdog,
    screen,
    sampler: new ScreenSampler({
      vm: 'exhibit',
      config: screenSchema.parse({ enabled: true, ...config }),
      clock,
      timers: clock,
      errorImages,
      source: {
        screenshot: async (domain) => {
          t.equal(domain, 'exhibit', 'screenshot of the right VM')
          shots.push(clock.now() - start)
          const s = h.screen(clock.now() - start)
          if (s instanceof Error) throw s
          return s
        }
      },
      target: {
        view: () => ({ state: watchdog.state }),
        requestRevert: (reason, source) => {
          requests.push({ reason, source, at: clock.now() - start })
          watchdog.state = 'reverting' // as the real watchdog does
          return { outcome: 'started' }
        }
      }
    }),
    run: async (seconds) => {
      const end = clock.now() + seconds * 1000
      while (clock.now() < end) {
        clock.advanceTo(Math.min(end, clock.now() + 1000))
        await h.sampler.idle()
      }
    }
  }
  t.teardown(() => h.sampler.stop())
  return h
}

t.test('changing, then frozen with a blinking cursor: exactly one screen_frozen request', async (t) => {
  // Moves for the first 60 s, then stands still (the cursor keeps blinking).
  const h = harness(t, { interval: 10, frozen_after: 60 }, (ms) => ms <= 60_000 ? frame(ms / 1000) : frame(60, Math.floor(ms / 10_000) % 2 === 1))
  h.sampler.start()
  await h.run(115)
  t.same(h.requests, [], 'no request while it moves and for less than frozen_after after')
  t.match(h.sampler.view(), { watching: true, last_change_at: '2026-11-23T10:01:00.000Z', unchanged_seconds: 50 })
  await h.run(10)
  t.same(h.requests, [{ reason: 'screen_frozen', source: SCREEN_REVERT_SOURCE, at: 120_000 }], '60 s without change after the last change at 60 s')
  const before = h.shots.length
  await h.run(300)
  t.equal(h.requests.length, 1, 'one request only')
  t.equal(h.shots.length, before, 'no screenshots while the watchdog reverts')
  t.equal(h.sampler.view().watching, false)

  // Back to watching (the revert is done, heartbeats came): the count starts afresh.
  h.watchdog.state = 'healthy'
  await h.run(60)
  t.equal(h.requests.length, 1, 'not right away: a new baseline first')
  await h.run(10)
  t.equal(h.requests.length, 2, 'frozen again for frozen_after: a second request')
  const intervals = h.shots.slice(1).map((at, i) => at - h.shots[i]!)
  t.ok(intervals.every((d) => d >= 10_000), 'screenshots never closer than interval')
})

t.test('no sampling outside healthy/late', async (t) => {
  const h = harness(t, { interval: 10, frozen_after: 30 }, () => frame(0))
  for (const state of ['starting', 'grace', 'maintenance', 'exhausted', 'reverting']) {
    h.watchdog.state = state
    await h.run(100)
  }
  t.equal(h.shots.length, 0, 'before start: nothing')
  h.sampler.start()
  for (const state of ['starting', 'grace', 'maintenance', 'exhausted']) {
    h.watchdog.state = state
    await h.run(100)
  }
  t.equal(h.shots.length, 0, 'not while starting, in grace, maintenance, exhausted')
  h.watchdog.state = 'late'
  await h.run(40)
  t.equal(h.requests.length, 1, 'late counts as watching')
})

t.test('screenshot failures reset the count and are reported', async (t) => {
  const h = harness(t, { interval: 10, frozen_after: 30 }, (ms) => ms >= 20_000 && ms < 40_000 ? new Error('domain is not running') : frame(0))
  h.sampler.start()
  await h.run(45)
  t.equal(h.requests.length, 0, 'a failing screenshot is not a frozen screen')
  t.match(h.sampler.view(), { last_error: null, last_change_at: '2026-11-23T10:00:40.000Z' })
  await h.run(30)
  t.equal(h.requests.length, 1)
  const failing = harness(t, { interval: 10, frozen_after: 30 }, () => new Error('boom'))
  failing.sampler.start()
  await failing.run(20)
  t.equal(failing.sampler.view().last_error, 'boom')
})

t.test('a slow drift adds up to a change', async (t) => {
  // One pixel column a sample: each step is below min_change_percent, the sum is not.
  const h = harness(t, { interval: 10, frozen_after: 60 }, (ms) => frame(Math.floor(ms / 10_000)))
  h.sampler.start()
  await h.run(300)
  t.same(h.requests, [], 'never frozen')
})

t.test('an error dialog is reverted at once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvw-screen-'))
  // The reference is a PNG (e.g. saved from screen.png); the screen sends PPM.
  const reference = (() => {
    const ppm = frame(30, false, true).data
    const header = `P6\n${W} ${H}\n255\n`.length
    return encodePng({ width: W, height: H, channels: 3, data: ppm.subarray(header) })
  })()
  writeFileSync(join(dir, 'dialog.png'), reference)
  writeFileSync(join(dir, 'broken.png'), 'not an image')
  const logged: string[] = []
  const log = { info: () => {}, warn: () => {}, error: (_: object, msg: string) => { logged.push(msg) } }
  const images = loadErrorImages(['dialog.png', 'broken.png', 'missing.png'], dir, log)
  t.same(images.map((i) => i.name), ['dialog.png'])
  t.equal(logged.length, 2, 'the unusable files are logged')
  t.match(logged[0], /broken\.png.*neither PNG nor/)
  // The artwork moves, then hangs at 30 s with the dialog over it (the whole screen is compared).
  const h = harness(t, { interval: 5, frozen_after: 600 }, (ms) => ms < 30_000 ? frame(ms / 1000) : frame(30, false, true), images)
  h.sampler.start()
  await h.run(60)
  t.same(h.requests, [{ reason: 'screen_error_dialog', source: SCREEN_REVERT_SOURCE, at: 30_000 }])
})

t.test('screen(): the thumbnail, cached and on demand, even when detection is off', async (t) => {
  const h = harness(t, { interval: 10, frozen_after: 60 }, (ms) => frame(ms))
  const off = new ScreenSampler({
    vm: 'exhibit',
    config: screenSchema.parse({}),
    clock: h.clock,
    timers: h.clock,
    source: { screenshot: async () => { h.shots.push(h.clock.now()); return frame(0) } },
    target: { view: () => ({ state: 'healthy' }), requestRevert: () => { throw new Error('never') } }
  })
  off.start()
  h.clock.advance(60_000)
  t.equal(h.shots.length, 0, 'disabled: no sampling')
  const [a, b] = await Promise.all([off.screen(2000), off.screen(2000)])
  t.equal(h.shots.length, 1, 'two requests at once share one screenshot')
  t.equal(a.takenAt, b.takenAt)
  t.same([a.width, a.height], [W, H])
  t.same([...a.png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG')
  h.clock.advance(1000)
  await off.screen(2000)
  t.equal(h.shots.length, 1, 'younger than maxAge: the cached one')
  h.clock.advance(5000)
  await off.screen(2000)
  t.equal(h.shots.length, 2, 'older: a new one')
})
