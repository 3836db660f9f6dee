// What a VM and a snapshot may be called: the config, the routes and the snapshot service all
// accept names by these rules, so they live below all three.
import { z } from 'zod'

/** VM names as libvirt accepts them, minus characters that would make URLs and logs ambiguous. */
export const vmNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/, 'letters, digits and _ . + - (max 64), starting with a letter or digit')

/** A snapshot's base name (`ready`). No `~`: that separates a base name from a revision's stamp. */
export const snapshotNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$/, 'letters, digits and _ . + - (max 100), starting with a letter or digit')
