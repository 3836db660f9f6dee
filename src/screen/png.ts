// A small PNG decoder and encoder over node:zlib, for what libvirt hands us and what we serve.
// Decodes 8-bit, non-interlaced grayscale, gray+alpha, RGB and RGBA (QEMU's and libvirt's test
// driver's screenshots are among these); anything else is refused with a message saying what it is.
// Encodes 8-bit grayscale or RGB.
import { deflateSync, inflateSync } from 'node:zlib'
import { ImageError, type RasterImage } from './raster.ts'

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** Channels per colour type (3 = palette is not supported). */
const CHANNELS: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 2: 3, 4: 2, 6: 4 }
/** Refuse images that would take more than this many bytes decoded (a 4K RGBA screen is 33 MB). */
const MAX_PIXELS = 8192 * 8192

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

export function crc32 (...parts: Uint8Array[]): number {
  let c = 0xffffffff
  for (const part of parts) {
    for (let i = 0; i < part.length; i++) c = CRC_TABLE[(c ^ part[i]!) & 0xff]! ^ (c >>> 8)
  }
  return (c ^ 0xffffffff) >>> 0
}

export function isPng (data: Uint8Array): boolean {
  return data.length >= 8 && Buffer.from(data.buffer, data.byteOffset, 8).equals(SIGNATURE)
}

export function decodePng (data: Buffer): RasterImage {
  if (!isPng(data)) throw new ImageError('not a PNG file (signature missing)')
  let offset = 8
  let header: { width: number, height: number, bitDepth: number, colorType: number, interlace: number } | null = null
  const idat: Buffer[] = []
  for (;;) {
    if (offset + 12 > data.length) throw new ImageError('PNG is truncated (no IEND chunk)')
    const length = data.readUInt32BE(offset)
    const type = data.toString('latin1', offset + 4, offset + 8)
    if (offset + 12 + length > data.length) throw new ImageError(`PNG is truncated (chunk ${type})`)
    const body = data.subarray(offset + 8, offset + 8 + length)
    if (crc32(data.subarray(offset + 4, offset + 8), body) !== data.readUInt32BE(offset + 8 + length)) {
      throw new ImageError(`PNG chunk ${type} has a bad checksum`)
    }
    offset += 12 + length
    if (type === 'IHDR') {
      if (length !== 13) throw new ImageError('PNG header has the wrong length')
      header = {
        width: body.readUInt32BE(0),
        height: body.readUInt32BE(4),
        bitDepth: body[8]!,
        colorType: body[9]!,
        interlace: body[12]!
      }
    } else if (type === 'IDAT') {
      idat.push(body)
    } else if (type === 'IEND') {
      break
    }
  }
  if (header === null) throw new ImageError('PNG has no header (IHDR)')
  const { width, height, bitDepth, colorType, interlace } = header
  const channels = CHANNELS[colorType]
  if (channels === undefined || bitDepth !== 8) {
    throw new ImageError(`PNG colour type ${colorType} at ${bitDepth} bits is not supported (only 8-bit grayscale, gray+alpha, RGB, RGBA)`)
  }
  if (interlace !== 0) throw new ImageError('interlaced PNG is not supported')
  if (width === 0 || height === 0 || width * height > MAX_PIXELS) throw new ImageError(`PNG size ${width}x${height} is out of range`)

  const stride = width * channels
  let raw: Buffer
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height + 1 })
  } catch (err) {
    throw new ImageError(`PNG image data does not inflate: ${(err as Error).message}`)
  }
  if (raw.length < (stride + 1) * height) throw new ImageError('PNG image data is shorter than its size says')
  const out = new Uint8Array(stride * height)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const src = y * (stride + 1) + 1
    const dst = y * stride
    const prev = dst - stride
    for (let x = 0; x < stride; x++) {
      const v = raw[src + x]!
      const a = x >= channels ? out[dst + x - channels]! : 0
      const b = y > 0 ? out[prev + x]! : 0
      const c = x >= channels && y > 0 ? out[prev + x - channels]! : 0
      let value: number
      switch (filter) {
        case 0: value = v; break
        case 1: value = v + a; break
        case 2: value = v + b; break
        case 3: value = v + ((a + b) >> 1); break
        case 4: {
          const p = a + b - c
          const pa = Math.abs(p - a)
          const pb = Math.abs(p - b)
          const pc = Math.abs(p - c)
          value = v + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)
          break
        }
        default: throw new ImageError(`PNG row ${y} has an unknown filter type ${filter}`)
      }
      out[dst + x] = value & 0xff
    }
  }
  return { width, height, channels, data: out }
}

function chunk (type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(body.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(head.subarray(4), body))
  return Buffer.concat([head, body, crc])
}

/** An 8-bit grayscale (1 channel) or RGB (3 channels) PNG; rows unfiltered (filter 0). */
export function encodePng (image: RasterImage): Buffer {
  const { width, height, channels, data } = image
  if (channels !== 1 && channels !== 3) throw new ImageError(`encodePng takes grayscale or RGB, not ${channels} channels`)
  const stride = width * channels
  const raw = Buffer.alloc((stride + 1) * height)
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1)
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = channels === 1 ? 0 : 2
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))])
}
