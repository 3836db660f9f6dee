// For tests against a real VM (the e2e suite): take a screen's signature now, and tell whether
// two signatures differ by the same rule the sampler uses.
import { decodeScreenshot } from './decode.ts'
import { compareGrids, toGrid, type Grid } from './raster.ts'
import type { ScreenSource } from './sampler.ts'

/** A screenshot of `domain` reduced to the gray grid the sampler compares. */
export async function screenSignature (source: ScreenSource, domain: string): Promise<Grid> {
  return toGrid(decodeScreenshot(await source.screenshot(domain)))
}

/** True when more than minChangePercent of the grid changed (the sampler's default is 0.5). */
export function screenChanged (before: Grid, after: Grid, minChangePercent = 0.5): boolean {
  return compareGrids(before, after).changedPercent > minChangePercent
}
