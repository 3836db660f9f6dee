// The dashboard's availability part: on each VM card a 24-hour strip (healthy, late, reverting,
// maintenance, closed; unknown where the service was not watching) with revert marks, today's
// and this week's share of opening hours, and, when frozen-screen detection is on, the latest
// screen thumbnail. Loaded after app.js (it uses its call() and authHeaders()); it finds the cards
// app.js draws and fills their [data-field="availability"] block. Text from the server only
// ever goes into textContent.
'use strict'
/* global API, call, authHeaders, serverOffsetMs, CSS, FileReader, MutationObserver -- app.js's and the browser's */

const AVAIL_REFRESH_MS = 30_000
const STRIP_HOURS = 24

function fmtPercent (ratio) {
  return ratio === null || ratio === undefined ? '–' : (Math.floor(ratio * 1000) / 10).toFixed(1) + ' %'
}

function availabilityBlock (vm) {
  const card = document.querySelector(`#vms [data-vm="${CSS.escape(vm)}"]`)
  return card ? card.querySelector('[data-field="availability"]') : null
}

function showFigure (el, summary) {
  el.textContent = fmtPercent(summary.ratio)
  el.dataset.ratio = summary.ratio === null ? '' : String(summary.ratio)
  el.dataset.from = summary.from
  el.dataset.to = summary.to
  const lost = Object.entries(summary.lost_seconds).filter(([, s]) => s > 0).map(([cause, s]) => `${cause.replace('_', ' ')} ${fmtDuration(s)}`)
  el.title = `${fmtDuration(summary.healthy_seconds)} healthy of ${fmtDuration(summary.opening_seconds)} opening hours` + (lost.length > 0 ? `; lost: ${lost.join(', ')}` : '')
}

function fmtDuration (s) {
  if (s < 60) return Math.round(s) + ' s'
  if (s < 3600) return Math.round(s / 60) + ' min'
  return (s / 3600).toFixed(1) + ' h'
}

function drawStrip (el, report) {
  const from = Date.parse(report.from)
  const span = Math.max(1, Date.parse(report.to) - from)
  const pos = (iso) => ((Date.parse(iso) - from) / span) * 100
  const pieces = report.strip.map((p) => {
    const div = document.createElement('div')
    div.className = 'seg'
    div.dataset.kind = p.kind
    // Set through the CSSOM: the Content-Security-Policy allows no inline style attribute.
    div.style.left = pos(p.from) + '%'
    div.style.width = Math.max(0, pos(p.to) - pos(p.from)) + '%'
    div.title = `${p.kind}: ${new Date(p.from).toLocaleTimeString()} – ${new Date(p.to).toLocaleTimeString()}`
    return div
  })
  const marks = report.revert_marks.map((m) => {
    const div = document.createElement('div')
    div.className = 'mark'
    div.dataset.cause = m.cause
    div.style.left = pos(m.at) + '%'
    div.title = `revert ${new Date(m.at).toLocaleTimeString()}: ${m.reason ?? '?'} (${m.cause.replace('_', ' ')})`
    return div
  })
  el.replaceChildren(...pieces, ...marks)
  el.dataset.from = report.from
  el.dataset.to = report.to
}

async function showThumbnail (img, vm) {
  // Fetched (not <img src>): a token in the Authorization header must go with it; the CSP
  // allows data: images.
  const res = await fetch(`${API}/vms/${encodeURIComponent(vm)}/screen.png`, { headers: authHeaders() })
  if (!res.ok) { img.hidden = true; return }
  const blob = await res.blob()
  const url = await new Promise((resolve, reject) => {
    const reader = new FileReader()
    reader.onload = () => resolve(reader.result)
    reader.onerror = () => reject(reader.error)
    reader.readAsDataURL(blob)
  })
  img.src = url
  img.title = 'screen at ' + new Date(res.headers.get('x-screen-taken-at') ?? Date.now()).toLocaleTimeString()
  img.hidden = false
}

let availabilityPending = false
async function loadAvailability () {
  if (availabilityPending) return
  availabilityPending = true
  try {
    const since = new Date(Date.now() + serverOffsetMs - STRIP_HOURS * 3_600_000).toISOString()
    const [list, strips] = await Promise.all([call('GET', API + '/vms'), call('GET', `${API}/availability?from=${encodeURIComponent(since)}`)])
    if (list.status !== 200 || !list.body) return
    const reports = new Map(strips.status === 200 && strips.body ? strips.body.vms.map((r) => [r.vm, r]) : [])
    for (const vm of list.body.vms) {
      const block = availabilityBlock(vm.name)
      if (!block) continue
      showFigure(block.querySelector('[data-field="avail-today"]'), vm.availability.today)
      showFigure(block.querySelector('[data-field="avail-week"]'), vm.availability.week)
      const report = reports.get(vm.name)
      if (report) drawStrip(block.querySelector('[data-field="strip"]'), report)
      const img = block.querySelector('[data-field="thumbnail"]')
      if (vm.screen.enabled) showThumbnail(img, vm.name).catch(() => { img.hidden = true })
      else img.hidden = true
    }
  } catch (err) {
    console.warn('availability:', err)
  } finally {
    availabilityPending = false
  }
}

// A new card, or a card whose state changed, is drawn again soon (at most once a second).
let availabilityTimer = null
function availabilitySoon () {
  if (availabilityTimer !== null) return
  availabilityTimer = setTimeout(() => { availabilityTimer = null; loadAvailability() }, 1000)
}
new MutationObserver(availabilitySoon).observe(document.querySelector('#vms'), { childList: true, subtree: true, attributeFilter: ['data-state'] })
setInterval(loadAvailability, AVAIL_REFRESH_MS)
