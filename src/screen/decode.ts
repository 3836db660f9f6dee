// Turns whatever libvirt returned as a screenshot into a RasterImage. The data's own signature
// decides (the MIME type is only named in errors): QEMU answers PPM, the test driver PNG.
import type { Screenshot } from '../libvirt/types.ts'
import { decodePng, isPng } from './png.ts'
import { decodePpm, ImageError, type RasterImage } from './raster.ts'

export function decodeImage (data: Buffer, what = 'image'): RasterImage {
  if (isPng(data)) return decodePng(data)
  if (data.length >= 2 && data[0] === 0x50 && (data[1] === 0x36 || data[1] === 0x35)) return decodePpm(data)
  throw new ImageError(`${what} is neither PNG nor binary PPM/PGM`)
}

export function decodeScreenshot (shot: Screenshot): RasterImage {
  return decodeImage(shot.data, `the screenshot (${shot.mimeType})`)
}
