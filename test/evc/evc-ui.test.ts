// exhibition-vm-controller's own web UI (../shared/evc-client/index.html, unmodified, read from
// there and never copied into the project) in front of the service on test:///default, driven in
// headless Chromium (issue #12, "Proof"). The page is served by a route this test alone adds to
// the app, so it shares the API's origin as it did under EVC (EVC served it at /ui/; our /ui/ is
// the dashboard, so it sits at /evc/ui/): its relative /api/v1/... calls reach the service
// directly, with the browser's own Sec-Fetch-Site and Origin headers. Each button's effect is
// checked through the API, and a refused action must show the service's message (EVC's page
// shows `error.detail`). Screenshots go to test/artifacts/evc-ui-*.png.
import t, { type Test } from 'tap'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { debianTool } from '../helpers/debian-tool.ts'
import { build, TOKEN } from '../helpers/app.ts'

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
/**
 * ../shared/evc-client relative to the project root (test/evc/ is two levels below it), or the
 * directory in EVC_CLIENT_DIR (a CI clone elsewhere, e.g. under /tmp, has no ../shared).
 */
const EVC_DIR = process.env['EVC_CLIENT_DIR'] ?? fileURLToPath(new URL('../../../shared/evc-client/', import.meta.url))
const EVC_PAGE = join(EVC_DIR, 'index.html')
const PAGE_PATH = '/evc/ui/'

const browserTool = debianTool('chromium', 'chromium')
const skip = !existsSync(EVC_PAGE)
  ? `EVC's web UI is not at ${EVC_PAGE}: put exhibition-vm-controller v1.3.0's client files in ../shared/evc-client/ beside the checkout, or set EVC_CLIENT_DIR`
  : 'skip' in browserTool ? browserTool.skip : false

// Run inside the page by playwright (this file is compiled without the DOM library).
declare const document: { getElementById (id: string): { textContent: string | null, className: string } | null }

/** Our test config: no automatic revert while the browser works (the page polls every 5 s). */
const CONFIG = {
  startup_grace: 3600,
  heartbeat_timeout: 600,
  // EVC's snapshot behaviour exactly (issue #12): the configured snapshot keeps its literal name
  // and a new one replaces it in place.
  keep_revisions: 0
}

async function launch (): Promise<Browser> {
  if ('skip' in browserTool) throw new Error(browserTool.skip)
  return await chromium.launch({
    executablePath: browserTool.path,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']
  })
}

/** Serves EVC's page, read from ../shared on every request, on the API's own origin. */
function serveEvcPage (app: FastifyInstance): void {
  app.get(PAGE_PATH, { config: { access: 'read' }, schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(readFileSync(EVC_PAGE)))
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

interface Api {
  get (path: string): Promise<any>
  /**
   * Polls GET path (real time, every 100 ms) until `ok` holds and returns that body; otherwise
   * fails the test with the last body and returns null, so the later buttons are still checked.
   */
  until (path: string, ok: (body: any) => boolean, what: string, timeoutMs?: number): Promise<any>
}

function apiClient (t: Test, url: string): Api {
  const get = async (path: string): Promise<any> => {
    const res = await fetch(url + path)
    return await res.json()
  }
  return {
    get,
    async until (path, ok, what, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      let body: any
      for (;;) {
        body = await get(path)
        if (ok(body)) return body
        if (Date.now() > deadline) {
          t.fail(`${what}: not reached within ${timeoutMs} ms; last ${path}: ${JSON.stringify(body).slice(0, 600)}`)
          return null
        }
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }
}

async function openPage (t: Test, browser: Browser, url: string): Promise<{ page: Page, problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(err.message))
  page.on('dialog', (dialog) => { problems.push(`unexpected dialog: ${dialog.message()}`); dialog.dismiss().catch(() => undefined) })
  const response = await page.goto(url + PAGE_PATH)
  t.equal(response?.status(), 200, 'EVC\'s page is served on the API\'s origin')
  await page.waitForFunction(() => document.getElementById('vmName')?.textContent !== '-', null, { timeout: 10_000 })
  return { page, problems }
}

/** The app with EVC's page on 127.0.0.1, an API client, and the page open in a new browser. */
async function startWithPage (t: Test, config: Record<string, unknown> = CONFIG) {
  const { app } = await build(t, { time: 'real', config, beforeReady: serveEvcPage })
  const url = await listen(app)
  const api = apiClient(t, url)
  const browser = await launch()
  t.teardown(() => browser.close())
  return { app, url, api, ...await openPage(t, browser, url) }
}

const text = async (page: Page, id: string): Promise<string> => (await page.locator(`#${id}`).textContent()) ?? ''
const cls = async (page: Page, id: string): Promise<string> => (await page.locator(`#${id}`).getAttribute('class')) ?? ''

/** Clicks EVC's Refresh Status button and waits until its status call has been answered and shown. */
async function refresh (page: Page): Promise<void> {
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/status')
  await page.getByRole('button', { name: 'Refresh Status' }).click()
  await answered
  await page.waitForTimeout(100) // the page renders after the body is read
}

interface Clicked { status: number, body: any, message: string, kind: string }

/** The messages of refused calls per page: EVC's page rethrows them (an uncaught rejection, by design). */
const refusedMessages = new WeakMap<Page, string[]>()

/** Page errors other than EVC's own rethrow of a refused call's message. */
function unexpected (page: Page, problems: string[]): string[] {
  const refused = refusedMessages.get(page) ?? []
  return problems.filter((p) => !refused.includes(p))
}

/**
 * Clicks the button named `label` and waits for the message the page shows after the API call
 * to ENDPOINT: returns the call's status and body and the message shown (EVC's `#message`).
 */
async function click (page: Page, label: string, endpoint: string): Promise<Clicked> {
  // The message of an earlier click would satisfy the wait below: start from none.
  await page.evaluate(() => { const m = document.getElementById('message')!; m.textContent = ''; m.className = 'message' })
  const responded = page.waitForResponse((r) => new URL(r.url()).pathname === endpoint, { timeout: 30_000 })
  await page.getByRole('button', { name: label }).click()
  const response = await responded
  const body = await response.json().catch(() => null)
  await page.waitForFunction(() => (document.getElementById('message')?.textContent ?? '') !== '', null, { timeout: 10_000 })
  const kind = /\berror\b/.test(await cls(page, 'message')) ? 'error' : 'success'
  const message = await text(page, 'message')
  if (kind === 'error') refusedMessages.set(page, [...(refusedMessages.get(page) ?? []), message.replace(/^Error: /, '')])
  return { status: response.status(), body, message, kind }
}

async function screenshot (page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}${name}`, fullPage: true })
}

const names = (list: unknown[]): string[] => list.map((s) => typeof s === 'string' ? s : String((s as { name?: unknown }).name))

t.test('every panel of EVC\'s page shows the service\'s live data', { skip }, async (t) => {
  const { url, api, page, problems } = await startWithPage(t)

  const status = await api.get('/api/v1/status')
  t.equal(await text(page, 'vmName'), 'test', 'System Status: VM Name')
  t.equal(await text(page, 'vmState'), 'running', 'System Status: VM State is virsh\'s word')
  t.equal(status.vm_state, 'running')
  t.match(await cls(page, 'vmState'), /status-good/, 'running is shown green')
  t.equal(await text(page, 'snapshot'), 'ready', 'System Status: Snapshot is the configured name')
  t.match(await cls(page, 'snapshot'), /status-good/, 'the snapshot exists (green)')
  t.equal(await text(page, 'autoRevert'), 'Enabled', 'System Status: Auto-Revert')
  t.match(await text(page, 'heartbeatStatus'), /^Waiting/, 'no heartbeat yet: waiting')
  t.equal(await text(page, 'hbEnabled'), 'Enabled', 'Heartbeat Activity: Status')
  t.equal(await text(page, 'hbLastReceived'), 'Never')
  t.equal(await text(page, 'hbTimeSince'), 'N/A')
  t.equal(await text(page, 'hbHealth'), 'No heartbeat yet')
  t.match(await text(page, 'lastUpdated'), /^Last updated: /)

  // A heartbeat, as the guest sends it: both heartbeat panels show it.
  const beat = await fetch(`${url}/api/v1/heartbeat`)
  t.equal(beat.status, 200, 'heartbeat accepted')
  await refresh(page)
  t.match(await text(page, 'heartbeatStatus'), /^✓ Healthy \(\d+\.\ds ago\)$/, 'System Status: Heartbeat healthy with its age')
  t.match(await cls(page, 'heartbeatStatus'), /status-good/)
  t.equal(await text(page, 'hbHealth'), '✓ Healthy', 'Heartbeat Activity: Health')
  t.match(await text(page, 'hbTimeSince'), /^\d+\.\ds ago$/, 'Heartbeat Activity: Time Since Last')
  const hb = await api.get('/api/v1/heartbeat/status')
  t.equal(hb.has_received_heartbeat, true)
  const expectedTime = await page.evaluate((epochS: number) => new Date(epochS * 1000).toLocaleTimeString(), hb.last_heartbeat as number)
  t.equal(await text(page, 'hbLastReceived'), expectedTime, 'Heartbeat Activity: Last Received is the service\'s last_heartbeat (epoch seconds)')
  await screenshot(page, 'evc-ui-live.png')

  // Live: the page's own 5 s poll picks up a change made elsewhere (here: through the API).
  const off = await fetch(`${url}/api/v1/revert/disable`, { method: 'POST' })
  t.equal(off.status, 200, 'auto-revert switched off through the API')
  await page.waitForFunction(() => document.getElementById('autoRevert')?.textContent === 'Disabled', null, { timeout: 8000 })
  t.pass('the page\'s poll shows Auto-Revert: Disabled without a click')
  t.equal(await text(page, 'hbEnabled'), 'Disabled', 'Heartbeat Activity: Status follows')
  t.same(unexpected(page, problems), [], 'no page errors')
})

t.test('every button has the effect it had under EVC, checked through the API', { skip }, async (t) => {
  const { app, api, page, problems } = await startWithPage(t)
  const reverts = async (): Promise<number> => (await api.get('/api/v1/status')).watchdog.counters.reverts as number
  const revertDone = (n: number) => (s: any) => s.watchdog.counters.reverts >= n && !s.watchdog.revert_in_flight && s.vm_is_running === true

  // Disable Auto-Revert: maintenance on (EVC: its in-memory flag off).
  let r = await click(page, '✗ Disable Auto-Revert', '/api/v1/revert/disable')
  t.equal(r.status, 200, `disable: ${r.message}`)
  t.equal(r.message, 'Auto-revert disabled - manual intervention required')
  let status = await api.get('/api/v1/status')
  t.equal(status.auto_revert_enabled, false, 'API: auto_revert_enabled false')
  t.equal(status.heartbeat.is_timed_out, false, 'API: heartbeat/status is_timed_out false in maintenance (EVC)')
  await page.waitForFunction(() => document.getElementById('autoRevert')?.textContent === 'Disabled', null, { timeout: 3000 })

  // Revert to Snapshot (GET /vm/restart) with auto-revert off: EVC always reverted.
  const before = await reverts()
  r = await click(page, '↻ Revert to Snapshot', '/api/v1/vm/restart')
  t.equal(r.kind, 'success', `revert in maintenance: ${r.message}`)
  t.equal(r.message, 'VM reverted to snapshot successfully')
  status = await api.until('/api/v1/status', revertDone(before + 1), 'the first revert')
  if (status) {
    t.equal(status.watchdog.counters.reverts, before + 1, 'API: one revert done')
    t.equal(status.watchdog.last_revert?.source, 'technician', 'API: the click is a technician\'s revert, not a guest\'s')
    // Done: awaiting_heartbeat (no guest runs here to send one), or recovered.
    t.ok(['awaiting_heartbeat', 'recovered'].includes(status.watchdog.last_revert?.outcome), `API: the revert was done (outcome ${status.watchdog.last_revert?.outcome})`)
    t.equal(status.auto_revert_enabled, false, 'API: the click did not end maintenance')
  }

  // A second click within a minute: reverted again (no guest revert interval for a technician).
  r = await click(page, '↻ Revert to Snapshot', '/api/v1/vm/restart')
  t.equal(r.kind, 'success', `second revert within 60 s: ${r.message}`)
  status = await api.until('/api/v1/status', revertDone(before + 2), 'the second revert')
  if (status) t.equal(status.watchdog.counters.by_source?.guest ?? 0, 0, 'API: no click counted as a guest revert (max_reverts is the guest\'s budget)')

  // Enable Auto-Revert.
  r = await click(page, '✓ Enable Auto-Revert', '/api/v1/revert/enable')
  t.equal(r.status, 200, `enable: ${r.message}`)
  t.equal(r.message, 'Auto-revert enabled')
  t.equal((await api.get('/api/v1/status')).auto_revert_enabled, true, 'API: auto_revert_enabled true')
  await page.waitForFunction(() => document.getElementById('autoRevert')?.textContent === 'Enabled', null, { timeout: 3000 })

  // Stop VM: destroyed, and left down (EVC's manual stop flag).
  r = await click(page, '⏹ Stop VM', '/api/v1/vm/stop')
  t.equal(r.kind, 'success', `stop: ${r.message}`)
  t.equal(r.message, 'VM stopped successfully')
  status = await api.until('/api/v1/status', (s) => s.vm_is_running === false, 'the VM stopped')
  t.equal(status?.vm_state, 'shut off', 'API: vm_state is virsh\'s "shut off"')
  await refresh(page)
  t.equal(await text(page, 'vmState'), status?.vm_state, 'the page shows the stopped state')
  t.match(await cls(page, 'vmState'), /status-bad/)
  await page.waitForTimeout(1000)
  t.equal((await api.get('/api/v1/status')).vm_is_running, false, 'API: the watchdog leaves a stopped VM down')

  // Create Snapshot of the stopped VM: refused with the reason, which the page shows as EVC did
  // (`Error: <detail>`), and nothing is created.
  const snapshotsBefore = names((await api.get('/api/v1/snapshots')).snapshots)
  r = await click(page, '💾 Create Snapshot', '/api/v1/snapshot/create')
  t.ok(r.status >= 400, `creating "ready" of a stopped VM is refused (HTTP ${r.status})`)
  t.equal(r.kind, 'error', 'the page shows it as an error')
  t.type(r.body?.detail, 'string', 'the error body carries EVC\'s `detail`')
  t.equal(r.message, `Error: ${r.body?.detail}`, 'the page shows the service\'s message, not "Request failed"')
  t.not(r.message, 'Error: Request failed')
  await screenshot(page, 'evc-ui-refused.png')
  t.same(names((await api.get('/api/v1/snapshots')).snapshots), snapshotsBefore, 'API: no snapshot created or removed')

  // Start VM: EVC cleared the manual stop and reverted to the snapshot.
  const beforeStart = await reverts()
  r = await click(page, '▶ Start VM', '/api/v1/vm/start')
  t.equal(r.kind, 'success', `start: ${r.message}`)
  t.equal(r.message, 'VM started successfully')
  status = await api.until('/api/v1/status', revertDone(beforeStart + 1), 'the VM started by a revert')
  t.equal(status?.vm_state, 'running', 'API: running again')
  t.equal(status?.auto_revert_enabled, true, 'API: watched again')

  // Create Snapshot of the running VM: "ready" replaced in place (EVC deleted and re-created it).
  const readyBefore = (await app.vms.get('test')!.snapshots.list('test')).filter((s) => s.name === 'ready')
  // creationTime has one-second resolution: make sure a new one is a later second.
  while (Date.now() / 1000 < (readyBefore[0]?.creationTime ?? 0) + 1.05) await page.waitForTimeout(100)
  r = await click(page, '💾 Create Snapshot', '/api/v1/snapshot/create')
  t.equal(r.kind, 'success', `create: ${r.message}`)
  t.equal(r.message, 'Snapshot "ready" created successfully')
  const listed = (await api.get('/api/v1/snapshots')).snapshots as unknown[]
  t.ok(listed.every((s) => typeof s === 'string'), 'API: `snapshots` is a list of names, as EVC\'s')
  t.same(names(listed).filter((n) => n.startsWith('ready')), ['ready'], 'API: exactly one snapshot "ready", no other name')
  const readyAfter = (await app.vms.get('test')!.snapshots.list('test')).filter((s) => s.name === 'ready')
  t.equal(readyAfter.length, 1)
  t.ok(readyBefore.length === 1 && (readyAfter[0]?.creationTime ?? 0) > (readyBefore[0]?.creationTime ?? 0), 'libvirt: "ready" is a new snapshot, made just now')
  status = await api.get('/api/v1/status')
  t.equal(status.snapshot_target, 'ready', 'API: the next revert uses "ready"')
  await refresh(page)
  t.equal(await text(page, 'snapshot'), 'ready')
  await screenshot(page, 'evc-ui-after-buttons.png')
  t.same(unexpected(page, problems), [], 'no page errors but EVC\'s own rethrow of a refusal')
})

t.test('a refused action shows the service\'s message (admin token configured)', { skip }, async (t) => {
  const { api, page, problems } = await startWithPage(t, { ...CONFIG, security: { admin_token: TOKEN } })

  // EVC's page sends no token: the service refuses Stop, and the page must say why.
  const r = await click(page, '⏹ Stop VM', '/api/v1/vm/stop')
  t.equal(r.status, 401, 'refused: the admin token is needed')
  t.equal(r.kind, 'error')
  t.type(r.body?.detail, 'string', 'the error body carries EVC\'s `detail`')
  t.equal(r.message, `Error: ${r.body?.detail}`, 'the page shows the service\'s message')
  t.match(r.message, /admin token/, 'which names what is missing')
  t.equal((await api.get('/api/v1/status')).vm_is_running, true, 'API: nothing was done')
  await screenshot(page, 'evc-ui-unauthorized.png')
  t.same(unexpected(page, problems), [], 'no page errors but EVC\'s own rethrow of the refusal')
})
