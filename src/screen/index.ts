// Frozen-screen detection and the screen thumbnail. See README.md.
export { decodeImage } from './decode.ts'
export { decodePng } from './png.ts'
export { compareGrids, ImageError } from './raster.ts'
export { loadErrorImages, ScreenSampler } from './sampler.ts'
