// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// against the real app on 127.0.0.1: live heartbeat age over SSE, a revert from its button, the
// admin-token prompt, and the login with read_requires_token (session cookie). Leaves screenshots
// in test/artifacts/dashboard*.png.
import t, { type Test } from 'tap'
import { mkdirSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { debianTool } from '../helpers/debian-tool.ts'
import { build, TOKEN } from '../helpers/app.ts'

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const browserTool = debianTool('chromium', 'chromium')
const skip = 'skip' in browserTool ? browserTool.skip : false

// Run inside the page by playwright (this file is compiled without the DOM library).
declare const document: { querySelector (selector: string): { textContent: string | null } | null, cookie: string }
declare const sessionStorage: { getItem (key: string): string | null, setItem (key: string, value: string): void }

async function launch (): Promise<Browser> {
  if ('skip' in browserTool) throw new Error(browserTool.skip)
  return await chromium.launch({
    executablePath: browserTool.path,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']
  })
}

/** A page in a new browser (closed at teardown), collecting console errors and page errors. */
async function openPage (t: Test): Promise<{ page: Page, problems: string[] }> {
  const browser = await launch()
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const problems: string[] = []
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(msg.text()) })
  page.on('pageerror', (err) => problems.push(err.message))
  return { page, problems }
}

async function serve (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** Seconds shown in the card's "last heartbeat" field, or null. */
async function shownAge (page: Page): Promise<number | null> {
  const text = await page.locator('[data-vm="test"] [data-field="age"]').textContent()
  const m = /^([\d.]+) s ago$/.exec(text ?? '')
  return m ? Number(m[1]) : null
}

t.test('live state, heartbeat age and a revert from the button', { skip }, async (t) => {
  const { app } = await build(t, { time: 'real', config: { startup_grace: 3600 } })
  const url = await serve(app)
  const { page, problems } = await openPage(t)
  page.on('dialog', (dialog) => { dialog.accept().catch(() => undefined) }) // the revert's confirm()

  const response = await page.goto(`${url}/`)
  t.equal(new URL(page.url()).pathname, '/ui/', '/ redirects a browser to /ui/')
  t.match(response?.headers()['content-security-policy'], /script-src 'self'/)
  const card = page.locator('[data-vm="test"]')
  await card.waitFor({ timeout: 10_000 })
  await page.locator('#live[data-live="live"]').waitFor({ timeout: 5000 })
  t.equal(await card.locator('[data-field="state"]').textContent(), 'starting')
  t.equal(await card.locator('[data-field="age"]').textContent(), 'none yet')

  // Heartbeats over HTTP, as the guest sends them.
  const beat = async (seq: number) => {
    const res = await fetch(`${url}/api/v1/heartbeat?seq=${seq}`)
    t.equal(res.status, 200, `heartbeat ${seq} accepted`)
  }
  await beat(1)
  await page.locator('[data-vm="test"] [data-field="state"][data-state="healthy"]').waitFor({ timeout: 3000 })
  await page.waitForFunction(() => /s ago$/.test(document.querySelector('[data-vm="test"] [data-field="age"]')?.textContent ?? ''), null, { timeout: 3000 })
  await page.waitForTimeout(1600) // the age must visibly grow: that is the feature under test
  const grown = await shownAge(page)
  t.ok(grown !== null && grown >= 1.2, `age counts up without heartbeats (${grown} s)`)
  await beat(2)
  await page.waitForFunction(() => {
    const m = /^([\d.]+) s ago$/.exec(document.querySelector('[data-vm="test"] [data-field="age"]')?.textContent ?? '')
    return m !== null && Number(m[1]) < 1
  }, null, { timeout: 3000 })
  t.pass('a new heartbeat resets the age on the page')
  t.match(await card.locator('[data-field="heartbeats"]').textContent(), /^2 \(seq 2\)/)

  // Revert from the button (no token configured, loopback: allowed).
  const reverted = new Promise<void>((resolve) => {
    app.watchdogs.get('test')!.on('revert', (e) => { if (e.phase === 'finish') resolve() })
  })
  await card.locator('button[data-action="revert"]').click()
  await page.locator('#message[data-kind="ok"]').waitFor({ timeout: 5000 })
  t.match(await page.locator('#message').textContent(), /Revert started|already under way/)
  await reverted
  t.pass('the watchdog reverted the VM')
  await page.waitForFunction(() => /dashboard \(technician\)/.test(document.querySelector('[data-vm="test"] [data-field="last-revert"]')?.textContent ?? ''), null, { timeout: 5000 })
  t.pass('the card shows the last revert with its reason')
  await page.locator('#history tbody tr', { hasText: 'dashboard' }).first().waitFor({ timeout: 5000 })
  t.pass('the revert is in the history table')

  await beat(3) // back to healthy after the revert: the screenshot shows a live, green card
  await page.locator('[data-vm="test"] [data-field="state"][data-state="healthy"]').waitFor({ timeout: 5000 })
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true })
  t.same(problems, [], 'no console errors (CSP violations included)')
})

t.test('actions ask for the admin token once and keep it for the tab', { skip }, async (t) => {
  const { app } = await build(t, { time: 'real', config: { startup_grace: 3600, security: { admin_token: TOKEN } } })
  const url = await serve(app)
  const browser = await launch()
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  const dialogs: string[] = []
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.type())
    const answered = dialog.type() === 'prompt' ? dialog.accept(TOKEN) : dialog.accept()
    answered.catch(() => undefined)
  })
  await page.goto(`${url}/ui/`)
  const card = page.locator('[data-vm="test"]')
  await card.waitFor({ timeout: 10_000 })

  await card.locator('button[data-action="maintenance-on"]').click()
  await page.locator('[data-vm="test"] [data-field="state"][data-state="maintenance"]').waitFor({ timeout: 5000 })
  t.same(dialogs, ['prompt'], 'asked for the token after the 401')
  t.equal(await page.evaluate(() => sessionStorage.getItem('kvw.adminToken')), TOKEN, 'kept in sessionStorage')
  t.match(await card.locator('[data-field="maintenance"]').textContent(), /^technician until/)

  await card.locator('button[data-action="maintenance-off"]').click()
  await page.locator('[data-vm="test"] [data-field="state"]:not([data-state="maintenance"])').waitFor({ timeout: 5000 })
  t.same(dialogs, ['prompt'], 'not asked again')

  // A wrong token is refused and forgotten.
  await page.evaluate(() => sessionStorage.setItem('kvw.adminToken', 'wrong-token-0123456789'))
  page.removeAllListeners('dialog')
  page.on('dialog', (dialog) => { dialog.dismiss().catch(() => undefined) })
  await card.locator('button[data-action="maintenance-on"]').click()
  await page.locator('#message[data-kind="error"]').waitFor({ timeout: 5000 })
  t.match(await page.locator('#message').textContent(), /needs the admin token/)
  t.equal(app.watchdogs.get('test')!.view().maintenance, null, 'nothing changed')
})

t.test('with read_requires_token the dashboard sends the browser to a login, then works on a session cookie', { skip }, async (t) => {
  const { app } = await build(t, { time: 'real', config: { startup_grace: 3600, security: { admin_token: TOKEN, read_requires_token: true } } })
  const url = await serve(app)
  const browser = await launch()
  t.teardown(() => browser.close())
  const context = await browser.newContext()
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(err.message))
  page.on('dialog', (dialog) => { problems.push(`unexpected ${dialog.type()}: ${dialog.message()}`); dialog.dismiss().catch(() => undefined) })

  await page.goto(`${url}/ui/`)
  await page.waitForURL(`${url}/ui/login`, { timeout: 5000 })
  t.pass('the dashboard sends a browser without a session to /ui/login')
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}dashboard-login.png`, fullPage: true })

  await page.locator('#login-token').fill('wrong-token-0123456789')
  await page.locator('#login-form button[type="submit"]').click()
  await page.locator('#message[data-kind="error"]').waitFor({ timeout: 5000 })
  t.match(await page.locator('#message').textContent(), /HTTP 401.*not valid/, 'a wrong token is refused on the page')
  t.same(await context.cookies(), [], 'and sets no cookie')

  await page.locator('#login-token').fill(TOKEN)
  await page.locator('#login-form button[type="submit"]').click()
  await page.waitForURL(`${url}/ui/`, { timeout: 5000 })
  const card = page.locator('[data-vm="test"]')
  await card.waitFor({ timeout: 10_000 })
  await page.locator('#live[data-live="live"]').waitFor({ timeout: 5000 })
  t.pass('after the login the live view runs')
  const cookies = await context.cookies()
  t.equal(cookies.length, 1, 'one cookie')
  t.match(cookies[0], { name: 'kvw_session', path: '/', httpOnly: true, sameSite: 'Strict', secure: false })
  t.equal(await page.evaluate(() => document.cookie), '', 'page scripts cannot read it (HttpOnly)')
  t.equal(await page.evaluate(() => sessionStorage.getItem('kvw.adminToken')), null, 'the token is not kept by the page')
  t.equal(await page.locator('#logout').isVisible(), true, 'a Log out button')

  // An admin action on the session: no token prompt.
  await card.locator('button[data-action="maintenance-on"]').click()
  await page.locator('[data-vm="test"] [data-field="state"][data-state="maintenance"]').waitFor({ timeout: 5000 })
  t.equal(app.watchdogs.get('test')!.view().maintenance?.reason, 'technician', 'maintenance switched on with the session')
  await page.locator('#history tbody tr').first().waitFor({ timeout: 5000 })
  t.pass('the history (GET /events) loads on the session')
  await page.screenshot({ path: `${ARTIFACTS}dashboard-logged-in.png`, fullPage: true })

  await page.locator('#logout').click()
  await page.waitForURL(`${url}/ui/login`, { timeout: 5000 })
  t.pass('Log out leads back to the login')
  const after = await page.evaluate(async () => (await fetch('/api/v1/status')).status)
  t.equal(after, 401, 'reads need a login again')
  t.same(problems, [], 'no page errors, no prompts')
})

t.test('availability: the 24-hour strip draws, its figure is the API\'s, the screen thumbnail shows', { skip }, async (t) => {
  const { app } = await build(t, {
    time: 'real',
    config: { startup_grace: 3600, timezone: 'UTC', screen: { enabled: true, interval: 3600, frozen_after: 86_400 } }
  })
  const url = await serve(app)
  const w = app.watchdogs.get('test')!
  // Healthy, a short maintenance, healthy, a technician's revert, healthy again.
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  w.heartbeat({ seq: 1 })
  await pause(300)
  await w.setMaintenance(null, 'technician', 'availability test')
  await pause(300)
  await w.clearMaintenance()
  w.heartbeat({ seq: 2 })
  await pause(300)
  t.equal(w.requestRevert('availability_test', 'technician').outcome, 'started')
  await w.settled()
  w.heartbeat({ seq: 3 })
  t.equal(w.view().state, 'healthy')

  const { page, problems } = await openPage(t)
  await page.goto(`${url}/ui/`)
  const strip = page.locator('[data-vm="test"] [data-field="strip"]')
  await strip.locator('.seg[data-kind="maintenance"]').first().waitFor({ state: 'attached', timeout: 10_000 })
  for (const kind of ['none', 'healthy', 'reverting']) {
    t.ok(await strip.locator(`.seg[data-kind="${kind}"]`).count() > 0, `the strip draws ${kind}`)
  }
  t.equal(await strip.locator('.mark').count(), 1, 'one revert mark')
  // By the segments' own geometry (percent of the day): the newest one may be a second wide,
  // a fraction of a pixel, so a bounding box cannot tell.
  type Styled = { getAttribute (name: string): string | null, style: { left: string, width: string } }
  const segments = await strip.locator('.seg').evaluateAll((els) => (els as unknown as Styled[]).map((e) => ({
    kind: e.getAttribute('data-kind'), left: parseFloat(e.style.left), width: parseFloat(e.style.width)
  })))
  const newest = segments.at(-1)
  t.ok(newest !== undefined && newest.kind === 'healthy' && newest.width > 0 && Math.abs(newest.left + newest.width - 100) < 0.01,
    `the strip ends now, healthy, at its right edge: ${JSON.stringify(newest)}`)

  // The figure on the card is the API's for the same range.
  const today = page.locator('[data-vm="test"] [data-field="avail-today"]')
  await page.waitForFunction(() => (document.querySelector('[data-vm="test"] [data-field="avail-today"]')?.textContent ?? '–') !== '–', null, { timeout: 10_000 })
  const shown: Record<string, string> = await today.evaluate((el) => {
    const e = el as unknown as { textContent: string, dataset: Record<string, string> }
    return { ...e.dataset, text: e.textContent }
  })
  const api = await (await fetch(`${url}/api/v1/availability?vm=test&from=${encodeURIComponent(shown['from']!)}&to=${encodeURIComponent(shown['to']!)}`)).json() as { vms: Array<{ ratio: number, lost_seconds: Record<string, number> }> }
  const ratio = api.vms[0]!.ratio
  t.ok(ratio > 0 && ratio < 1, `some opening time was lost (ratio ${ratio})`)
  t.ok(api.vms[0]!.lost_seconds['maintenance']! > 0.3, 'to the maintenance and the technician\'s revert')
  t.equal(Number(shown['ratio']), ratio, 'the card\'s figure is the API\'s')
  t.equal(shown.text, (Math.floor(ratio * 1000) / 10).toFixed(1) + ' %')

  const thumbnail = page.locator('[data-vm="test"] img[data-field="thumbnail"]')
  await thumbnail.waitFor({ state: 'visible', timeout: 10_000 })
  t.match(await thumbnail.getAttribute('src'), /^data:image\/png;base64,/, 'the latest screen, as a thumbnail')
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}dashboard-availability.png`, fullPage: true })
  t.same(problems, [], 'no console errors (CSP violations included)')
})
