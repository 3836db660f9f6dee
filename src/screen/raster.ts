// Raw images and the few operations the frozen-screen detector needs: decode a screenshot
// (PPM from QEMU, PNG from libvirt's test driver), shrink it to a small grayscale grid, compare
// two grids, and make an RGB thumbnail.

export class ImageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ImageError'
  }
}

export interface RasterImage {
  width: number
  height: number
  /** 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; 8 bits each, rows packed. */
  channels: 1 | 2 | 3 | 4
  data: Uint8Array
}

/** A small grayscale picture of the screen (values 0..255), what samples are compared by. */
export interface Grid {
  width: number
  height: number
  data: Float32Array
}

export const GRID_WIDTH = 64
export const GRID_HEIGHT = 48

/** Netpbm P6 (binary RGB) and P5 (binary gray), maxval up to 255: what QEMU's screendump writes. */
export function decodePpm (data: Buffer): RasterImage {
  const magic = data.toString('latin1', 0, 2)
  if (magic !== 'P6' && magic !== 'P5') throw new ImageError(`not a binary PPM/PGM file (starts with ${JSON.stringify(data.toString('latin1', 0, 2))})`)
  // Header: magic, width, height, maxval, separated by whitespace and # comments; one whitespace byte ends it.
  const fields: number[] = []
  let i = 2
  while (fields.length < 3) {
    while (i < data.length && /\s/.test(String.fromCharCode(data[i]!))) i++
    if (data[i] === 0x23) { // '#': comment to end of line
      while (i < data.length && data[i] !== 0x0a) i++
      continue
    }
    const start = i
    while (i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39) i++
    if (i === start) throw new ImageError('PPM header is not valid (expected width, height and maxval)')
    fields.push(Number(data.toString('latin1', start, i)))
  }
  i++ // the single whitespace byte after maxval
  const [width, height, maxval] = fields as [number, number, number]
  if (maxval < 1 || maxval > 255) throw new ImageError(`PPM maxval ${maxval} is not supported (only 8-bit, up to 255)`)
  if (width === 0 || height === 0 || width * height > 8192 * 8192) throw new ImageError(`PPM size ${width}x${height} is out of range`)
  const channels = magic === 'P6' ? 3 : 1
  const size = width * height * channels
  if (data.length - i < size) throw new ImageError(`PPM pixel data is truncated (${data.length - i} of ${size} bytes)`)
  const pixels = new Uint8Array(data.subarray(i, i + size))
  if (maxval !== 255) for (let p = 0; p < pixels.length; p++) pixels[p] = Math.round(pixels[p]! * 255 / maxval)
  return { width, height, channels, data: pixels }
}

/** Luma (BT.601) of pixel `p` (index of its first byte); alpha is ignored: the screen is opaque. */
function luma (image: RasterImage, p: number): number {
  const d = image.data
  return image.channels >= 3 ? 0.299 * d[p]! + 0.587 * d[p + 1]! + 0.114 * d[p + 2]! : d[p]!
}

/**
 * Shrinks the image to a width x height grid of mean gray values (each cell averages the pixels
 * it covers), so noise and small detail (a blinking cursor) weigh little and sizes need not match.
 */
export function toGrid (image: RasterImage, width = GRID_WIDTH, height = GRID_HEIGHT): Grid {
  const sums = new Float64Array(width * height)
  const counts = new Uint32Array(width * height)
  const ch = image.channels
  for (let y = 0; y < image.height; y++) {
    const gy = Math.min(height - 1, Math.floor(y * height / image.height))
    const row = y * image.width * ch
    for (let x = 0; x < image.width; x++) {
      const cell = gy * width + Math.min(width - 1, Math.floor(x * width / image.width))
      sums[cell] = sums[cell]! + luma(image, row + x * ch)
      counts[cell] = counts[cell]! + 1
    }
  }
  const data = new Float32Array(width * height)
  for (let i = 0; i < data.length; i++) data[i] = counts[i]! > 0 ? sums[i]! / counts[i]! : 0
  return { width, height, data }
}

export interface GridDifference {
  /** Mean absolute difference of the cells, 0..255. */
  meanAbs: number
  /** Percentage of cells that differ by more than the noise level. */
  changedPercent: number
}

/** Cells differing by less than this (of 255) count as unchanged: compression noise, dithering. */
export const CELL_NOISE = 8

export function compareGrids (a: Grid, b: Grid, noise = CELL_NOISE): GridDifference {
  if (a.width !== b.width || a.height !== b.height) throw new ImageError(`grids differ in size (${a.width}x${a.height} and ${b.width}x${b.height})`)
  let sum = 0
  let changed = 0
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!)
    sum += d
    if (d > noise) changed++
  }
  return { meanAbs: sum / a.data.length, changedPercent: changed * 100 / a.data.length }
}

/** An RGB (or gray, for gray input) copy at most maxWidth wide, aspect kept, by area averaging. */
export function thumbnail (image: RasterImage, maxWidth = 320): RasterImage {
  const scale = Math.min(1, maxWidth / image.width)
  const width = Math.max(1, Math.round(image.width * scale))
  const height = Math.max(1, Math.round(image.height * scale))
  const outCh = image.channels >= 3 ? 3 : 1
  const sums = new Float64Array(width * height * outCh)
  const counts = new Uint32Array(width * height)
  const ch = image.channels
  const d = image.data
  for (let y = 0; y < image.height; y++) {
    const ty = Math.min(height - 1, Math.floor(y * height / image.height))
    for (let x = 0; x < image.width; x++) {
      const cell = ty * width + Math.min(width - 1, Math.floor(x * width / image.width))
      const p = (y * image.width + x) * ch
      for (let c = 0; c < outCh; c++) sums[cell * outCh + c] = sums[cell * outCh + c]! + d[p + c]!
      counts[cell] = counts[cell]! + 1
    }
  }
  const data = new Uint8Array(width * height * outCh)
  for (let i = 0; i < data.length; i++) data[i] = Math.round(sums[i]! / Math.max(1, counts[Math.floor(i / outCh)]!))
  return { width, height, channels: outCh, data }
}
