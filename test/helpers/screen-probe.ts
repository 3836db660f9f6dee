// For tests against a real VM: take a screen's signature now, and tell whether two signatures
// differ by the same rule the sampler uses.
import { decodeScreenshot } from '../../src/screen/decode.ts'
import { compareGrids, toGrid, type Grid } from '../../src/screen/raster.ts'
import type { ScreenSource } from '../../src/screen/sampler.ts'

/** A screenshot of `domain` reduced to the gray grid the sampler compares. */
export async function screenSignature (source: ScreenSource, domain: string): Promise<Grid> {
  return toGrid(decodeScreenshot(await source.screenshot(domain)))
}

/** True when more than minChangePercent of the grid changed (the sampler's default is 0.5). */
export function screenChanged (before: Grid, after: Grid, minChangePercent = 0.5): boolean {
  return compareGrids(before, after).changedPercent > minChangePercent
}
