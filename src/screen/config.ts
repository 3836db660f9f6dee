// The `screen:` config block of a VM (its zod schema, used by src/config/schema.ts).
import { z } from 'zod'

export const screenSchema = z.strictObject({
  enabled: z.boolean().default(false).describe('Watch the VM\'s screen and revert when it stops changing. Only for artworks that always move: a still picture is a frozen screen to this detector.'),
  interval: z.number().min(1).max(3600).default(10).describe('Seconds between screenshots.'),
  frozen_after: z.number().min(10).max(86_400, 'at most 86400 s').default(120).describe('Seconds without a visible change before the screen counts as frozen: revert (reason screen_frozen).'),
  min_change_percent: z.number().min(0).max(100).default(0.5).describe('A sample differs from the previous one when more than this percentage of a 64x48 gray grid changed (a blinking cursor is about 0.1 %).'),
  error_images: z.array(z.string().min(1)).default([]).describe('Screenshots (PNG or PPM files; relative to the config file) of known error dialogs: a screen that looks like one is reverted at once (reason screen_error_dialog).'),
  error_match_threshold: z.number().min(0).max(255).default(6).describe('A screen matches an error image when their grids differ by less than this on average (0..255).')
}).refine((s) => s.frozen_after >= 2 * s.interval, { message: 'frozen_after must be at least twice interval (two screenshots are needed to see no change)', path: ['frozen_after'] })

export type ScreenConfig = z.output<typeof screenSchema>
