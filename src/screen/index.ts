// Frozen-screen detection and the screen thumbnail. See README.md.
export { screenSchema, type ScreenConfig } from './config.ts'
export { decodeImage, decodeScreenshot } from './decode.ts'
export { decodePng, encodePng } from './png.ts'
export { compareGrids, decodePpm, ImageError, thumbnail, toGrid, GRID_WIDTH, GRID_HEIGHT, type Grid, type GridDifference, type RasterImage } from './raster.ts'
export {
  loadErrorImages, ScreenSampler, SCREEN_ERROR_DIALOG, SCREEN_FROZEN, SCREEN_REVERT_SOURCE, WATCHING_STATES,
  type ErrorImage, type ScreenCapture, type ScreenSamplerOptions, type ScreenSource, type ScreenTarget, type ScreenView
} from './sampler.ts'
export { screenSignature, screenChanged } from './probe.ts'
