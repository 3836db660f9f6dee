// CPU cost of one frozen-screen sample and of the screen.png thumbnail: decode (PNG through
// pngjs, PPM), the 64x48 grid, thumbnail + PNG encode. Needs only libvirt's test driver (its
// screenshot is the PNG measured). Prints numbers; no pass/fail.
//   npm run bench:screen  [-- --runs 30]
import { performance } from 'node:perf_hooks'
import { openHypervisor } from '../src/libvirt/index.ts'
import { decodePng, encodePng } from '../src/screen/png.ts'
import { decodePpm, thumbnail, toGrid, type RasterImage } from '../src/screen/raster.ts'
import { benchArgs, line, loadNote, stats } from './lib.ts'

const { runs } = benchArgs(30)

function time (label: string, fn: () => unknown): void {
  for (let i = 0; i < 3; i++) fn() // warm-up
  const samples: number[] = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    fn()
    samples.push(performance.now() - t0)
  }
  const s = stats(samples)
  console.log(line(label, `median ${s.median.toFixed(1).padStart(6)} ms  p95 ${s.p95.toFixed(1).padStart(6)} ms  (n=${s.n})`))
}

const h = openHypervisor('test:///default', { reconnect: false })
await h.connect()
const shot = (await h.screenshot('test')).data
await h.close()
const gray = decodePng(shot)

// A 1920x1080 RGB screen with bands and noise (what a QEMU screendump of a kiosk is like), as PPM and PNG.
const width = 1920
const height = 1080
const rgb = new Uint8Array(width * height * 3)
for (let i = 0; i < rgb.length; i++) rgb[i] = ((((i / 3) | 0) % width) >> 5) * 9 + (i % 3) * 40 + (Math.imul(i, 2654435761) >>> 28)
const screen: RasterImage = { width, height, channels: 3, data: rgb }
const ppm = Buffer.concat([Buffer.from(`P6\n${width} ${height}\n255\n`), rgb])
const png = encodePng(screen)

console.log(`screen sampling cost, ${runs} runs each; ${loadNote()}`)
console.log(line(`test driver screenshot: PNG ${gray.width}x${gray.height}, ${gray.channels} channel(s)`, `${shot.length} bytes`))
time('decode PNG (test driver)', () => decodePng(shot))
time('decode PNG + grid (test driver)', () => toGrid(decodePng(shot)))
time(`decode PPM ${width}x${height} RGB (QEMU)`, () => decodePpm(ppm))
time(`decode PNG ${width}x${height} RGB`, () => decodePng(png))
time(`grid of ${width}x${height} RGB`, () => toGrid(screen))
time('thumbnail + PNG encode (test driver screen)', () => encodePng(thumbnail(gray)))
time(`thumbnail + PNG encode (${width}x${height} RGB)`, () => encodePng(thumbnail(screen)))
