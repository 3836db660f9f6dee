// The PNG decoder/encoder, the PPM decoder, the gray grid and its comparison; and a real
// screenshot from libvirt's test driver decoded.
import t from 'tap'
import { deflateSync } from 'node:zlib'
import { openHypervisor } from '../../src/libvirt/index.ts'
import { decodeImage, decodeScreenshot } from '../../src/screen/decode.ts'
import { decodePng, encodePng } from '../../src/screen/png.ts'
import { compareGrids, decodePpm, ImageError, thumbnail, toGrid, type RasterImage } from '../../src/screen/raster.ts'

function pattern (width: number, height: number, channels: 1 | 3, seed = 0): RasterImage {
  const data = new Uint8Array(width * height * channels)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13 + (i >> 5)) & 0xff
  return { width, height, channels, data }
}

/** CRC-32 of PNG chunks (ISO 3309), to build PNGs independently of the library under test. */
function crc32 (...parts: Uint8Array[]): number {
  let c = 0xffffffff
  for (const part of parts) {
    for (const byte of part) {
      c ^= byte
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    }
  }
  return (c ^ 0xffffffff) >>> 0
}

/**
 * A PNG built by hand with every row filter and the given colour type, to test the decoder alone.
 * `bytesPerPixel` is the filter unit (6 for 16-bit RGB). `raw`: the image data as it is, unfiltered
 * by this function (for an interlaced image); `extra`: chunks before IDAT (PLTE).
 */
function handmadePng (width: number, height: number, colorType: number, bytesPerPixel: number, pixels: Uint8Array, bitDepth = 8, interlace = 0, raw?: Uint8Array, extra: Array<[string, Buffer]> = []): Buffer {
  const channels = bytesPerPixel
  const stride = width * channels
  const rows: number[] = []
  for (let y = 0; y < height; y++) {
    const filter = y % 5
    rows.push(filter)
    for (let x = 0; x < stride; x++) {
      const v = pixels[y * stride + x]!
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0
      const paeth = () => {
        const p = a + b - c
        const pa = Math.abs(p - a); const pb = Math.abs(p - b); const pc = Math.abs(p - c)
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
      }
      const predicted = [0, a, b, (a + b) >> 1, paeth()][filter]!
      rows.push((v - predicted) & 0xff)
    }
  }
  const chunk = (type: string, body: Buffer) => {
    const head = Buffer.alloc(8); head.writeUInt32BE(body.length); head.write(type, 4, 'latin1')
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(head.subarray(4), body))
    return Buffer.concat([head, body, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4)
  ihdr[8] = bitDepth; ihdr[9] = colorType; ihdr[12] = interlace
  const idat = deflateSync(raw ?? Buffer.from(rows))
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('tEXt', Buffer.from('Comment\0ignored')),
    ...extra.map(([type, body]) => chunk(type, body)),
    chunk('IDAT', idat.subarray(0, 10)), chunk('IDAT', idat.subarray(10)), // split image data
    chunk('IEND', Buffer.alloc(0))
  ])
}

t.test('crc32 matches the PNG specification\'s check value', async (t) => {
  t.equal(crc32(Buffer.from('123456789')), 0xcbf43926)
})

t.test('PNG encode/decode roundtrip, gray and RGB', async (t) => {
  for (const channels of [1, 3] as const) {
    const image = pattern(37, 23, channels)
    const png = encodePng(image)
    const back = decodePng(png)
    t.same({ w: back.width, h: back.height, c: back.channels }, { w: 37, h: 23, c: channels })
    t.ok(Buffer.from(back.data).equals(Buffer.from(image.data)), `${channels} channel(s): same pixels`)
  }
})

t.test('PNG decoder: every filter type, alpha channels, what it refuses', async (t) => {
  for (const [colorType, channels] of [[0, 1], [2, 3], [4, 2], [6, 4]] as const) {
    const pixels = new Uint8Array(9 * 11 * channels).map((_, i) => (i * 31 + (i % 7) * 5) & 0xff)
    const image = decodePng(handmadePng(9, 11, colorType, channels, pixels))
    t.equal(image.channels, channels, `colour type ${colorType}`)
    t.ok(Buffer.from(image.data).equals(Buffer.from(pixels)), `colour type ${colorType}: filters 0-4 undone`)
  }
  // Kinds the hand-written decoder used to refuse, which pngjs reads.
  const rgb16 = new Uint8Array(4 * 4 * 6).map((_, i) => i % 2 === 0 ? (i * 7) & 0xff : 0x80)
  const deep = decodePng(handmadePng(4, 4, 2, 6, rgb16, 16))
  t.same([deep.channels, deep.data.length], [3, 4 * 4 * 3], '16-bit RGB: read as 8-bit RGB')
  t.same([...deep.data.subarray(0, 3)], [0, 14, 28], '16-bit samples scaled to 8 bits')
  const palette = Buffer.from([255, 0, 0, 0, 0, 255]) // 0 = red, 1 = blue
  const indexed = decodePng(handmadePng(2, 2, 3, 1, new Uint8Array([0, 1, 1, 0]), 8, 0, undefined, [['PLTE', palette]]))
  t.same([indexed.channels, ...indexed.data], [3, 255, 0, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0], 'palette: expanded to RGB')
  // Adam7 of a 2x2 image: pass 1 has (0,0), pass 6 (1,0), pass 7 the second row; filter 0 each.
  const adam7 = new Uint8Array([0, 10, 0, 20, 0, 30, 40])
  const interlaced = decodePng(handmadePng(2, 2, 0, 1, new Uint8Array(4), 8, 1, adam7))
  t.same([interlaced.channels, ...interlaced.data], [1, 10, 20, 30, 40], 'interlaced gray')

  const good = encodePng(pattern(8, 8, 3))
  const idatEnd = 33 + 8 + good.readUInt32BE(33) // IHDR ends at 33; IDAT's length, type, data
  const bad = Buffer.from(good); bad[idatEnd + 1] = bad[idatEnd + 1]! ^ 0xff // its checksum only: the data are intact
  t.throws(() => decodePng(bad), { name: 'ImageError', message: /^PNG does not decode \(corrupt or truncated file\)/ }, 'a bad checksum')
  t.throws(() => decodePng(good.subarray(0, 30)), { name: 'ImageError', message: /^PNG does not decode \(corrupt or truncated file\)/ }, 'truncated')
  const huge = Buffer.from(good); huge.writeUInt32BE(100_000, 16); huge.writeUInt32BE(100_000, 20)
  t.throws(() => decodePng(huge), { name: 'ImageError', message: /PNG size 100000x100000 is out of range/ }, 'refused before decoding')
  t.throws(() => decodePng(Buffer.from('not a png at all')), { message: /signature missing/ })
  t.throws(() => decodeImage(Buffer.from('GIF89a...')), ImageError)
})

t.test('PPM (P6, P5) as QEMU writes it', async (t) => {
  const rgb = pattern(5, 3, 3)
  const ppm = Buffer.concat([Buffer.from('P6\n# made by QEMU\n5 3\n255\n'), rgb.data])
  const image = decodeImage(ppm)
  t.same([image.width, image.height, image.channels], [5, 3, 3])
  t.ok(Buffer.from(image.data).equals(Buffer.from(rgb.data)))
  const pgm = decodePpm(Buffer.concat([Buffer.from('P5 2 2 15\n'), Buffer.from([0, 15, 5, 10])]))
  t.same([...pgm.data], [0, 255, 85, 170], 'maxval 15 scaled to 255')
  t.throws(() => decodePpm(Buffer.concat([Buffer.from('P6\n5 3\n255\n'), rgb.data.subarray(0, 10)])), { message: /truncated/ })
  t.throws(() => decodePpm(Buffer.from('P6\n5 3\n65535\n')), { message: /maxval 65535/ })
  t.throws(() => decodePpm(Buffer.from('P6\nfive 3\n255\n')), { message: /header is not valid/ })
  t.equal(decodeScreenshot({ mimeType: 'image/x-portable-pixmap', data: ppm }).width, 5)
})

t.test('gray grid and comparison: a blinking cursor is no change, a moving picture is', async (t) => {
  const width = 1024
  const height = 768
  const screen = (cursorOn: boolean, shift: number): RasterImage => {
    const data = new Uint8Array(width * height * 3)
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const p = (y * width + x) * 3
        const band = ((x + shift) >> 6) & 1 ? 200 : 40
        const cursor = cursorOn && x >= 100 && x < 108 && y >= 100 && y < 116
        data[p] = data[p + 1] = data[p + 2] = cursor ? 255 : band
      }
    }
    return { width, height, channels: 3, data }
  }
  const a = toGrid(screen(false, 0))
  t.same([a.width, a.height, a.data.length], [64, 48, 64 * 48])
  t.equal(compareGrids(a, toGrid(screen(false, 0))).changedPercent, 0, 'same screen: no change')
  const cursor = compareGrids(a, toGrid(screen(true, 0)))
  t.ok(cursor.changedPercent < 0.1, `cursor: ${cursor.changedPercent.toFixed(3)} % of the cells`)
  const moved = compareGrids(a, toGrid(screen(false, 32)))
  t.ok(moved.changedPercent > 40, `bands moved: ${moved.changedPercent.toFixed(1)} % of the cells`)
  t.throws(() => compareGrids(a, toGrid(screen(false, 0), 32, 24)), { message: /differ in size/ })
})

t.test('thumbnail keeps the aspect and the colours', async (t) => {
  const image: RasterImage = { width: 640, height: 480, channels: 4, data: new Uint8Array(640 * 480 * 4).fill(0).map((_, i) => [10, 100, 200, 255][i % 4]!) }
  const thumb = thumbnail(image)
  t.same([thumb.width, thumb.height, thumb.channels], [320, 240, 3])
  t.same([...thumb.data.subarray(0, 3)], [10, 100, 200])
  const small = thumbnail(pattern(100, 50, 1))
  t.same([small.width, small.height, small.channels], [100, 50, 1], 'never enlarged')
})

t.test('the test driver\'s real screenshot decodes', async (t) => {
  const h = openHypervisor('test:///default', { reconnect: false })
  await h.connect()
  t.teardown(() => h.close())
  const shot = await h.screenshot('test')
  const image = decodeScreenshot(shot)
  t.ok(image.width > 0 && image.height > 0, `${image.width}x${image.height}, ${image.channels} channel(s)`)
  t.equal(image.data.length, image.width * image.height * image.channels)
  const grid = toGrid(image)
  const values = new Set(Array.from(grid.data, (v) => Math.round(v)))
  t.ok(values.size > 1, 'the picture is not blank')
  // A thumbnail (what screen.png serves) can stand in for the full screenshot as an error image.
  const again = toGrid(decodePng(encodePng(thumbnail(image))))
  const same = compareGrids(grid, again).meanAbs
  t.ok(same < 6, `its thumbnail matches within error_match_threshold's default 6 (${same.toFixed(2)})`)
  const inverted = toGrid({ ...image, data: image.data.map((v) => 255 - v) })
  t.ok(compareGrids(grid, inverted).meanAbs > 50, 'an inverted screen does not')
})
