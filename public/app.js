// kiosk-vm-watchdog dashboard: live watchdog state over Server-Sent Events, the audit trail,
// and the technician's buttons. Plain DOM, no framework; text from the server (guest-chosen
// reasons included) only ever goes into textContent, never into HTML.
'use strict'

const TOKEN_KEY = 'kvw.adminToken'
const API = '/api/v1'
const cards = new Map() // vm name -> { el, view }
let serverOffsetMs = 0 // server clock - browser clock, from the stream's ts
let lastSignature = ''

const $ = (sel, root = document) => root.querySelector(sel)

function token () { return sessionStorage.getItem(TOKEN_KEY) || '' }
function authHeaders () {
  const t = token()
  return t ? { authorization: 'Bearer ' + t } : {}
}

function say (text, kind = 'info') {
  const el = $('#message')
  el.textContent = text
  el.dataset.kind = kind
}

async function call (method, path) {
  const res = await fetch(path, { method, headers: { accept: 'application/json', ...authHeaders() } })
  let body = null
  try { body = await res.json() } catch { body = null }
  return { status: res.status, body }
}

// --- live state ---------------------------------------------------------------------------------

function setLive (state) {
  const el = $('#live')
  el.dataset.live = state
  el.textContent = state === 'live' ? 'live' : state === 'denied' ? 'no access' : state + '…'
}

function sleep (ms) { return new Promise((resolve) => setTimeout(resolve, ms)) }

// EventSource cannot send an Authorization header (needed with read_requires_token), so the
// stream is read with fetch and parsed here; it reconnects on its own.
async function stream () {
  for (;;) {
    try {
      setLive('connecting')
      const res = await fetch(API + '/events/stream', { headers: { accept: 'text/event-stream', ...authHeaders() } })
      if (res.status === 401 || res.status === 403) {
        if (res.status === 401 && await loginNeeded()) return
        setLive('denied')
        say('The live view needs the admin token: enter it above.', 'error')
        await sleep(5000)
        continue
      }
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status)
      setLive('live')
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buf = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buf += value
        let end
        while ((end = buf.indexOf('\n\n')) >= 0) {
          onBlock(buf.slice(0, end))
          buf = buf.slice(end + 2)
        }
      }
    } catch (err) {
      console.warn('stream:', err)
    }
    setLive('reconnecting')
    await sleep(2000)
  }
}

function onBlock (block) {
  let event = 'message'
  const data = []
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim()
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
  }
  if (event !== 'state' || data.length === 0) return
  const msg = JSON.parse(data.join('\n'))
  serverOffsetMs = msg.ts - Date.now()
  for (const view of msg.vms) render(view)
  for (const name of [...cards.keys()]) {
    if (!msg.vms.some((v) => v.vm === name)) { cards.get(name).el.remove(); cards.delete(name) }
  }
  const lib = msg.vms.length > 0 ? msg.vms.every((v) => v.libvirt_connected) : null
  const libEl = $('#libvirt')
  libEl.dataset.ok = String(lib)
  libEl.textContent = lib === null ? 'libvirt ?' : lib ? 'libvirt connected' : 'libvirt DOWN'
  // New revert or state change: the history has news.
  const signature = msg.vms.map((v) => `${v.vm}:${v.state}:${v.last_revert ? v.last_revert.at + v.last_revert.outcome : ''}:${v.maintenance ? 'm' : ''}`).join('|')
  if (signature !== lastSignature) {
    lastSignature = signature
    loadHistory()
  }
}

function fmtTime (iso) { return new Date(iso).toLocaleTimeString() }
function fmtSeconds (s) { return s < 100 ? s.toFixed(1) + ' s' : Math.round(s) + ' s' }

function render (view) {
  let card = cards.get(view.vm)
  if (!card) {
    const el = $('#vm-card').content.firstElementChild.cloneNode(true)
    el.dataset.vm = view.vm
    for (const button of el.querySelectorAll('button[data-action]')) {
      button.addEventListener('click', () => act(button.dataset.action, view.vm, button))
    }
    $('#vms').append(el)
    card = { el, view }
    cards.set(view.vm, card)
  }
  card.view = view
  const f = (name) => $(`[data-field="${name}"]`, card.el)
  f('name').textContent = view.vm
  f('state').textContent = view.state
  f('state').dataset.state = view.state
  f('timeout').textContent = `(timeout ${view.timeout} s)`
  f('detector').textContent = fmtDetector(view.detector)
  f('heartbeats').textContent = String(view.heartbeats_total) + (view.last_seq !== null ? ` (seq ${view.last_seq})` : '')
  f('vm-state').textContent = view.vm_running === null ? 'unknown' : (view.vm_running ? 'running' : 'not running') + (view.vm_reason ? ` (${view.vm_reason})` : '') + (view.action ? ` — ${view.action}…` : '')
  f('reverts').textContent = `${view.recent_reverts} of ${view.max_reverts}` + (view.exhausted ? ` — EXHAUSTED: ${view.exhausted.reason}` : '')
  const r = view.last_revert
  f('last-revert').textContent = r ? `${fmtTime(r.at)}: ${r.reason} (${r.source}) — ${r.outcome}` + (r.duration_ms !== null ? `, ${(r.duration_ms / 1000).toFixed(1)} s` : '') : 'none'
  const m = view.maintenance
  f('maintenance').textContent = m ? `${m.reason}` + (m.until ? ` until ${fmtTime(m.until)}` : ' (until ended)') + (m.note ? ` — ${m.note}` : '') : 'off'
  updateAge(card)
}

/** "adaptive (φ 0.4 of 8): revert after 3.0 s of silence", or "fixed: revert after 15.0 s of silence". */
function fmtDetector (d) {
  if (!d) return '–'
  const after = d.effective_timeout === null ? '' : `: revert after ${fmtSeconds(d.effective_timeout)} of silence`
  if (d.detector === 'fixed') return 'fixed' + after
  if (d.rule === 'fixed') return `adaptive (learning: ${d.learned_seconds} s of heartbeats seen)` + after
  return `adaptive (φ ${d.phi === null ? '–' : d.phi.toFixed(1)} of ${d.phi_threshold})` + after
}

function updateAge (card) {
  const el = $('[data-field="age"]', card.el)
  const last = card.view.last_heartbeat
  if (last === null) { el.textContent = 'none yet'; return }
  el.textContent = fmtSeconds(Math.max(0, (Date.now() + serverOffsetMs - Date.parse(last)) / 1000)) + ' ago'
}

// Between messages (one a second) the age keeps counting on the browser's clock.
setInterval(() => { for (const card of cards.values()) updateAge(card) }, 200)

// --- history ---------------------------------------------------------------------------------------

let historyPending = false
async function loadHistory () {
  if (historyPending) return
  historyPending = true
  try {
    const { status, body } = await call('GET', API + '/events?limit=50')
    const note = $('#history-note')
    if (status !== 200 || !body || !Array.isArray(body.events)) {
      note.textContent = `Events not available (HTTP ${status}${body && body.error ? ': ' + body.error.message : ''}).`
      return
    }
    note.textContent = body.events.length === 0 ? 'No events yet.' : ''
    const rows = body.events.map((e) => {
      const tr = document.createElement('tr')
      tr.dataset.kind = e.kind
      const duration = typeof e.durationMs === 'number' ? (e.durationMs / 1000).toFixed(1) + ' s' : ''
      for (const text of [new Date(e.ts).toLocaleString(), e.vm, e.kind, e.reason ?? '', e.outcome ?? '', duration]) {
        const td = document.createElement('td')
        td.textContent = String(text)
        tr.append(td)
      }
      return tr
    })
    $('#history tbody').replaceChildren(...rows)
  } finally {
    historyPending = false
  }
}

// --- actions -----------------------------------------------------------------------------------------

const ACTIONS = {
  revert: { method: 'POST', path: (vm) => `${API}/revert?vm=${vm}&reason=dashboard`, confirm: (vm) => `Revert ${vm} to its snapshot now?` },
  'maintenance-on': { method: 'POST', path: (vm) => `${API}/revert/disable?vm=${vm}&minutes=30` },
  'maintenance-off': { method: 'POST', path: (vm) => `${API}/revert/enable?vm=${vm}` },
  'snapshot-create': { method: 'POST', path: (vm) => `${API}/snapshot/create?vm=${vm}`, confirm: (vm) => `Snapshot ${vm} as it is now? The current snapshot is kept as a revision.` },
  'snapshot-rollback': { method: 'POST', path: (vm) => `${API}/snapshot/rollback?vm=${vm}`, confirm: (vm) => `Make the previous snapshot revision of ${vm} active again?` }
}

async function act (name, vm, button) {
  const action = ACTIONS[name]
  if (action.confirm && !window.confirm(action.confirm(vm))) return
  button.disabled = true
  try {
    const path = action.path(encodeURIComponent(vm))
    let res = await call(action.method, path)
    if (res.status === 401) {
      const entered = window.prompt('Admin token (kept for this browser tab only):')
      if (!entered) { say('Not sent: this needs the admin token.', 'error'); return }
      sessionStorage.setItem(TOKEN_KEY, entered.trim())
      showToken()
      res = await call(action.method, path)
    }
    if (res.status >= 200 && res.status < 300) {
      say(res.body && res.body.message ? res.body.message : 'Done', 'ok')
    } else {
      say(`${button.textContent} failed (HTTP ${res.status}): ${res.body && res.body.error ? res.body.error.message : 'no details'}`, 'error')
      if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY)
    }
    loadHistory()
  } catch (err) {
    say(`${button.textContent} failed: ${err.message}`, 'error')
  } finally {
    button.disabled = false
  }
}

// --- token ------------------------------------------------------------------------------------------

function showToken () { $('#token').placeholder = token() ? 'saved for this tab' : 'not set'; $('#token').value = '' }

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const value = $('#token').value.trim()
  if (value) sessionStorage.setItem(TOKEN_KEY, value)
  showToken()
  say(value ? 'Admin token saved for this tab.' : 'Nothing entered.', value ? 'ok' : 'info')
})
$('#token-forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); showToken(); say('Admin token forgotten.') })

// --- login session (read_requires_token: a browser cannot send the Authorization header) -----------

/** Sends the browser to the login page when reads need a token it does not have; true if it did. */
async function loginNeeded () {
  const { status, body } = await call('GET', API + '/session').catch(() => ({ status: 0, body: null }))
  if (status !== 200 || !body) return false
  $('#logout').hidden = !body.logged_in
  if (body.read_requires_token && body.login_available && !body.logged_in && !token()) {
    window.location.replace('/ui/login')
    return true
  }
  return false
}

$('#logout').addEventListener('click', async () => {
  const { status, body } = await call('DELETE', API + '/session').catch(() => ({ status: 0, body: null }))
  if (status !== 200) { say(`Log out failed (HTTP ${status}): ${body && body.error ? body.error.message : 'no details'}`, 'error'); return }
  $('#logout').hidden = true
  if (!await loginNeeded()) say('Logged out.', 'ok')
})

async function loadStatus () {
  const { status, body } = await call('GET', API + '/status').catch(() => ({ status: 0, body: null }))
  if (status === 200 && body) $('#version').textContent = 'v' + body.version
}

showToken()
loginNeeded().then((away) => {
  if (away) return
  loadStatus()
  loadHistory()
  setInterval(loadHistory, 15000)
  stream()
})
