// The guest scripts (AutoIt for Windows XP, PowerShell, sh) against the service they call: every
// API path and method they use must be a route the app really serves, with the parameters it
// validates. The calls are read from the sources (no Windows here to run AutoIt or PowerShell);
// the sh script is also run for real against the app on loopback.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.ts'
import { parseConfig } from '../src/config/load.ts'
import { openHypervisor } from '../src/libvirt/index.ts'

function run (cmd: string, args: string[]): Promise<{ code: number, stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr })
    })
  })
}

const GUEST = fileURLToPath(new URL('../guest-scripts/', import.meta.url))

interface ApiCall {
  file: string
  method: 'GET' | 'POST'
  path: string
  /** Query parameter names written next to the path (same source line). */
  params: string[]
}

type Language = 'autoit' | 'powershell' | 'sh'
const LANGUAGES: Record<string, Language> = { '.au3': 'autoit', '.ps1': 'powershell', '.sh': 'sh' }

function guestFiles (dir = GUEST): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name)
    if (e.isDirectory()) return guestFiles(p)
    return Object.keys(LANGUAGES).some((ext) => e.name.endsWith(ext)) ? [p] : []
  }).sort()
}

const languageOf = (file: string): Language => LANGUAGES[file.slice(file.lastIndexOf('.'))]!

/** The source without its comments (whole-line ones and block comments), as lines. */
function codeLines (text: string, language: Language): string[] {
  let code = text
  if (language === 'powershell') code = code.replace(/<#[\s\S]*?#>/g, '')
  if (language === 'autoit') code = code.replace(/^\s*#(cs|comments-start)\b[\s\S]*?^\s*#(ce|comments-end)\b.*$/gim, '')
  const comment = language === 'autoit' ? ';' : '#'
  return code.split('\n').filter((line) => !line.trimStart().startsWith(comment))
}

/** The HTTP method a file's requests use; a file that could send two is not something this reader can judge. */
function methodOf (text: string, language: Language, file: string): 'GET' | 'POST' {
  let post: boolean
  if (language === 'autoit') {
    // InetGet can only GET; anything that could POST would need one of these.
    post = /WinHttp|XMLHTTP|TCPSend|_INetSmtp|ServerXMLHTTP/i.test(text)
  } else if (language === 'powershell') {
    post = /-Method\s+['"]?Post|\.Method\s*=\s*['"]POST|UploadString|UploadData|UploadValues/i.test(text)
  } else {
    post = /curl[^\n]*(\s-X\s*POST|\s--data|\s-d\s)|wget[^\n]*--post-(data|file)/.test(text)
  }
  const get = language === 'autoit' ? /InetGet/.test(text) : !post || /\.Method\s*=\s*['"]GET/i.test(text)
  if (post && get && language !== 'sh') throw new Error(`${file}: sends both GET and POST; teach this test which call is which`)
  return post ? 'POST' : 'GET'
}

/** Every API call in one guest script: /api/v1/... paths inside string literals of code lines. */
function extractCalls (file: string, text: string): ApiCall[] {
  const language = languageOf(file)
  const method = methodOf(text, language, file)
  const calls: ApiCall[] = []
  for (const line of codeLines(text, language)) {
    const literals = [...line.matchAll(/"([^"]*)"|'([^']*)'/g)].map((m) => m[1] ?? m[2] ?? '')
    const params = [...new Set(literals.flatMap((l) => [...l.matchAll(/[?&]([A-Za-z_]\w*)=/g)].map((m) => m[1]!)))]
    for (const literal of literals) {
      for (const m of literal.matchAll(/\/api\/v1\/[A-Za-z0-9_/.{}-]*[A-Za-z0-9_}]/g)) {
        calls.push({ file: relative(GUEST, file), method, path: m[0], params })
      }
    }
  }
  return calls
}

const allCalls = () => guestFiles().flatMap((f) => extractCalls(f, readFileSync(f, 'utf8')))
const summary = (calls: ApiCall[]) => [...new Set(calls.map((c) => `${c.file} ${c.method} ${c.path} ${c.params.join(',')}`))].sort()

/** Revert reasons the AutoIt scripts send: literal arguments of the revert helpers, and what _StartArtwork returns as one. */
function autoitReasons (): string[] {
  const reasons = new Set<string>()
  for (const file of guestFiles().filter((f) => f.endsWith('.au3'))) {
    const code = codeLines(readFileSync(file, 'utf8'), 'autoit').join('\n')
    for (const m of code.matchAll(/_(?:KVW_RequestRevert|RevertThenRestart)\("([^"]*)"\)/g)) reasons.add(m[1]!)
    const start = /^Func _StartArtwork\(\)$[\s\S]*?^EndFunc$/m.exec(code)?.[0] ?? ''
    for (const m of start.matchAll(/Return "([^"]+)"/g)) reasons.add(m[1]!)
  }
  return [...reasons].sort()
}

t.test('the reader finds the calls each script makes', async (t) => {
  t.same(summary(allCalls()), [
    'linux/heartbeat.sh GET /api/v1/heartbeat seq,status',
    'linux/heartbeat.sh GET /api/v1/revert/request reason',
    'windows-xp/common.au3 GET /api/v1/revert/request reason',
    'windows-xp/heartbeat.au3 GET /api/v1/heartbeat seq,status',
    'windows/heartbeat.ps1 GET /api/v1/heartbeat seq,status',
    'windows/heartbeat.ps1 GET /api/v1/revert/request reason'
  ])
  t.same(autoitReasons(), ['artwork_start_failed', 'idle', 'process_missing', 'window_timeout'])
})

t.test('the reader itself: comments are skipped, methods are told apart', async (t) => {
  t.same(extractCalls('/x/a.au3', '; InetGet("/api/v1/nowhere")\n_KVW_Get("/api/v1/heartbeat?seq=" & $n & "&status=ok")\n').map((c) => [c.method, c.path, c.params]),
    [['GET', '/api/v1/heartbeat', ['seq', 'status']]])
  t.same(extractCalls('/x/a.ps1', '<# "/api/v1/doc" #>\n$r.Method = \'POST\'\n$u = "$base/api/v1/vm/stop"\n').map((c) => [c.method, c.path]),
    [['POST', '/api/v1/vm/stop']])
  t.same(extractCalls('/x/a.sh', '# "/api/v1/comment"\ncurl -X POST "$u/api/v1/revert/enable"\n').map((c) => [c.method, c.path]),
    [['POST', '/api/v1/revert/enable']])
  t.throws(() => extractCalls('/x/b.ps1', "$a.Method = 'GET'\n$b.Method = 'POST'\n"), /both GET and POST/)
})

async function testApp (t: Test): Promise<FastifyInstance> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kvw-guest-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const app = await buildApp({
    config: parseConfig({ data_dir: dataDir, startup_grace: 3600, api_host: '127.0.0.1' }, {}),
    hypervisor: openHypervisor('test:///default', { reconnect: false })
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('every call is a route the service serves, with that method and those parameters', async (t) => {
  const app = await testApp(t)
  const calls = allCalls()
  t.ok(calls.length >= 6)
  for (const call of calls) {
    t.ok(app.hasRoute({ method: call.method, url: call.path }), `${call.file}: ${call.method} ${call.path} is served`)
  }

  const sample: Record<string, string> = { seq: '7', status: 'ok', reason: 'idle' }
  for (const call of calls.filter((c) => c.path === '/api/v1/heartbeat')) {
    const query = call.params.map((p) => `${p}=${encodeURIComponent(sample[p] ?? 'x')}`).join('&')
    const res = await app.inject({ method: call.method, url: `${call.path}?${query}` })
    t.equal(res.statusCode, 200, `${call.file}: ${call.method} ${call.path}?${query} is accepted`, { body: res.body })
  }
  // Each reason the scripts send passes the route's validation (a refusal to revert, 409, is
  // fine here: the test driver's VM has no snapshot; a 400 would mean the reason is malformed).
  for (const reason of autoitReasons()) {
    const res = await app.inject({ method: 'GET', url: `/api/v1/revert/request?reason=${encodeURIComponent(reason)}` })
    t.not(res.statusCode, 400, `reason "${reason}" is valid`, { body: res.body })
    t.not(res.statusCode, 404, 'revert/request is served')
    const body = res.json()
    t.equal(body.details?.reason ?? body.error?.details?.reason, reason, `reason "${reason}" arrives as the script sent it`)
    t.notOk(body.details?.ignored ?? body.error?.details?.ignored, 'nothing of it ignored')
  }
  // Any reason is taken (never a lost request); what the route changes it names (so the check above means something).
  const cleaned = await app.inject({ method: 'GET', url: '/api/v1/revert/request?reason=' + encodeURIComponent('idle\u0007') })
  t.same((cleaned.json().details ?? cleaned.json().error.details).ignored, ['reason: control characters removed'])
})

t.test('heartbeat.sh against the running service on loopback', async (t) => {
  const app = await testApp(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  // Asynchronously: the service answers from this process's event loop.
  const once = await run('sh', [join(GUEST, 'linux/heartbeat.sh'), 'once', '--url', url])
  t.equal(once.code, 0, 'heartbeat.sh once: the service answered 2xx', { stderr: once.stderr })
  const status = await app.inject({ method: 'GET', url: '/api/v1/heartbeat/status' })
  t.match(status.body, /"has_received_heartbeat":true|"last_heartbeat":\d/, 'the service recorded it')
})

t.test('AutoIt scripts: every setting they read is in config.ini, and no address is hard-coded', async (t) => {
  const ini = readFileSync(join(GUEST, 'windows-xp/config.ini'), 'utf8')
  const keys = new Set<string>()
  let section = ''
  for (const line of ini.split(/\r?\n/)) {
    const s = /^\[(.+)\]$/.exec(line.trim())
    if (s) section = s[1]!
    const k = /^([a-z_]+)=/.exec(line.trim())
    if (k) keys.add(`${section}.${k[1]}`)
  }
  const read = new Set<string>()
  for (const file of guestFiles().filter((f) => f.endsWith('.au3'))) {
    const code = codeLines(readFileSync(file, 'utf8'), 'autoit').join('\n')
    for (const m of code.matchAll(/_KVW_Read(?:Number|Flag)?\("(\w+)", "(\w+)"/g)) read.add(`${m[1]}.${m[2]}`)
    t.notMatch(code, /(_KVW_Get|InetGet)\([^)\n]*https?:/i, `${relative(GUEST, file)}: no URL written into a request (it comes from config.ini)`)
    for (const m of code.matchAll(/\$g_sKvwHostUrl = (.*)/g)) t.match(m[1], /^""$|_KVW_Read\("host", "url"/, 'the host URL is only ever read from config.ini')
  }
  t.ok(read.size >= 20, `the scripts read their settings through _KVW_Read* (${read.size})`)
  for (const key of [...read].sort()) t.ok(keys.has(key), `config.ini has [${key.replace('.', '] ')}`)
  t.match(ini, /^url=http:\/\/192\.168\.122\.1:8000$/m)
})

t.test('AutoIt scripts stay within AutoIt 3.3.8.1 (the last release for Windows XP)', async (t) => {
  for (const file of guestFiles().filter((f) => f.endsWith('.au3'))) {
    const name = relative(GUEST, file)
    // Strings out first: the checks are about syntax, not text.
    const code = codeLines(readFileSync(file, 'utf8'), 'autoit').join('\n').replace(/"[^"\n]*"|'[^'\n]*'/g, '""')
    t.notMatch(code, /\?[^\n]*:/, `${name}: no ternary operator (3.3.10+)`)
    t.notMatch(code, /\bNull\b|\bVolatile\b|\bMap\b/, `${name}: no Null/Volatile/Map (3.3.10+)`)
    t.notMatch(code, /#include\s*<(AutoItConstants|InetConstants|FileConstants|MsgBoxConstants|StringConstants)\.au3>/,
      `${name}: no constants files that came with 3.3.10`)
    t.notMatch(code, /\$INET_[A-Z]+/, `${name}: no $INET_* constants (3.3.10+); plain numbers instead`)
    t.notMatch(code, /MsgBox\s*\(/, `${name}: no message box on a kiosk`)
    const opens = (code.match(/^\s*(If\b(?!.*\bThen[ \t]+[^ \t;])|While\b|For\b|Func\b|Do\b|Switch\b|Select\b)/gm) ?? []).length
    const closes = (code.match(/^\s*(EndIf|WEnd|Next|EndFunc|Until\b|EndSwitch|EndSelect)\b/gm) ?? []).length
    t.equal(opens, closes, `${name}: blocks are balanced (${opens} opened, ${closes} closed)`)
  }
})
