// A scratch directory removed after the test's apps are closed. Teardowns run last-registered
// first, so create the directory before building the app. (t.testdir() is removed outside that
// order: an app still writing its state on close then fails the teardown.)
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

export function scratchDir (t: Test, prefix = 'kvw-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
