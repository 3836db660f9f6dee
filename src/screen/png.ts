// PNG in and out with pngjs, for what libvirt hands us (the test driver's screenshots, error
// images a technician saved) and what we serve (screen.png). pngjs reads every PNG kind (gray,
// palette, alpha, 16-bit, interlaced) into 8-bit RGBA; the image is handed on with its own
// channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), so a gray screen is not four times its size.
import { PNG, type PNGWithMetadata } from 'pngjs'
import { ImageError, type RasterImage } from './raster.ts'

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** Refuse images larger than this before decoding (a 4K RGBA screen is 33 MB; pngjs has no cap). */
const MAX_PIXELS = 8192 * 8192

export function isPng (data: Uint8Array): boolean {
  return data.length >= 8 && Buffer.from(data.buffer, data.byteOffset, 8).equals(SIGNATURE)
}

export function decodePng (data: Buffer): RasterImage {
  if (!isPng(data)) throw new ImageError('not a PNG file (signature missing)')
  // IHDR is the first chunk (the format requires it): its size is checked before pngjs allocates.
  if (data.length >= 24 && data.toString('latin1', 12, 16) === 'IHDR') {
    const width = data.readUInt32BE(16)
    const height = data.readUInt32BE(20)
    if (width === 0 || height === 0 || width * height > MAX_PIXELS) throw new ImageError(`PNG size ${width}x${height} is out of range`)
  }
  let png: PNGWithMetadata
  try {
    // checkCRC: PNG.sync.read leaves it off unless asked (the PNG class turns it on).
    png = PNG.sync.read(data, { checkCRC: true })
  } catch (err) {
    // pngjs's sync reader reports a bad checksum as "unrecognised content at end of stream".
    throw new ImageError(`PNG does not decode (corrupt or truncated file): ${err instanceof Error ? err.message : String(err)}`)
  }
  const { width, height, data: rgba } = png
  const channels = png.color ? (png.alpha ? 4 : 3) : (png.alpha ? 2 : 1)
  if (channels === 4) return { width, height, channels, data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.length) }
  // Keep the channels the file has: R (= G = B for gray), G and B for colour, then A if any.
  const out = new Uint8Array(width * height * channels)
  let o = 0
  for (let p = 0; p < rgba.length; p += 4) {
    out[o++] = rgba[p]!
    if (channels === 3) { out[o++] = rgba[p + 1]!; out[o++] = rgba[p + 2]! }
    if (channels === 2) out[o++] = rgba[p + 3]!
  }
  return { width, height, channels, data: out }
}

/** An 8-bit grayscale (1 channel) or RGB (3 channels) PNG. */
export function encodePng (image: RasterImage): Buffer {
  const { width, height, channels, data } = image
  if (channels !== 1 && channels !== 3) throw new ImageError(`encodePng takes grayscale or RGB, not ${channels} channels`)
  const colorType = channels === 1 ? 0 : 2
  const png = { width, height, data: Buffer.from(data.buffer, data.byteOffset, data.length) } as PNG
  // deflateLevel 6 (zlib's default) instead of pngjs's 9: a thumbnail is encoded on request.
  return PNG.sync.write(png, { colorType, inputColorType: colorType, inputHasAlpha: false, deflateLevel: 6 })
}
