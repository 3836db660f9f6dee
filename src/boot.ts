#!/usr/bin/env node
// The production entry, dist/cli.js: runs the bundle of src/cli.ts (dist/service.cjs, built by
// scripts/build.mjs) with V8's code cache in systemd's CacheDirectory= (code-cache.ts). Not used
// from src/ (tsx, tests run src/cli.ts itself).
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { runWithCodeCache } from './code-cache.ts'

const service = fileURLToPath(new URL('service.cjs', import.meta.url))
if (process.sourceMapsEnabled) {
  // `--enable-source-maps` (a drop-in, to read src/ lines in a stack trace): node maps only what
  // its own loader compiled, not a node:vm script, so the bundle is loaded as any module, uncached.
  createRequire(import.meta.url)(service)
} else {
  // CACHE_DIRECTORY is a colon-separated list when a unit names several; ours names one.
  runWithCodeCache(service, process.env['CACHE_DIRECTORY']?.split(':')[0])
}
