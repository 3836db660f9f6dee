// The dashboard's login: posts the admin token to /api/v1/session, which answers with an HttpOnly
// session cookie; then back to the dashboard. The token itself is not kept by the page.
'use strict'

const form = document.querySelector('#login-form')
const input = document.querySelector('#login-token')
const message = document.querySelector('#message')

function say (text, kind) {
  message.textContent = text
  message.dataset.kind = kind
}

form.addEventListener('submit', async (e) => {
  e.preventDefault()
  const token = input.value.trim()
  if (!token) { say('Enter the admin token.', 'error'); return }
  const button = form.querySelector('button')
  button.disabled = true
  try {
    const res = await fetch('/api/v1/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ token })
    })
    let body = null
    try { body = await res.json() } catch { body = null }
    if (res.ok) {
      input.value = ''
      say('Logged in.', 'ok')
      window.location.assign('/ui/')
      return
    }
    say(`Not logged in (HTTP ${res.status}): ${body && body.error ? body.error.message : 'no details'}`, 'error')
    input.select()
  } catch (err) {
    say(`Not logged in: ${err.message}`, 'error')
  } finally {
    button.disabled = false
  }
})

// Already logged in (or no login needed): straight to the dashboard.
fetch('/api/v1/session', { headers: { accept: 'application/json' } })
  .then((res) => res.json())
  .then((s) => {
    if (s.logged_in) window.location.replace('/ui/')
    else if (!s.login_available) say('No admin token is configured: the dashboard works without a login from this host.', 'info')
  })
  .catch(() => undefined)
input.focus()
