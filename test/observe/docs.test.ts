// /docs and /docs/json: the OpenAPI document generated from the routes' zod schemas.
import t from 'tap'
import { build } from '../helpers/app.ts'

interface Operation { summary?: string, responses?: Record<string, unknown>, security?: unknown[], 'x-access'?: string, parameters?: Array<{ name: string, in: string }> }
interface OpenApiDoc {
  openapi: string
  info: { title: string, version: string }
  paths: Record<string, Record<string, Operation>>
  components?: { securitySchemes?: Record<string, { type: string, scheme?: string }> }
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])

t.test('the OpenAPI 3 document lists the API, with access and security', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/docs/json', remoteAddress: '192.168.1.50' })
  t.equal(res.statusCode, 200, 'read access from anywhere')
  const doc = res.json() as OpenApiDoc
  t.match(doc.openapi, /^3\.\d+\.\d+$/)
  t.equal(doc.info.title, 'kiosk-vm-watchdog API')
  t.match(doc.info.version, /^\d+\.\d+\.\d+/)
  t.same(doc.components?.securitySchemes?.['adminToken'], { type: 'http', scheme: 'bearer', description: 'security.admin_token from config.yaml' })

  for (const path of ['/api/v1/status', '/api/v1/events/stream', '/metrics']) {
    t.ok(doc.paths[path]?.['get'], `GET ${path} is documented`)
  }
  // Structure every OpenAPI 3 document must have.
  for (const [path, item] of Object.entries(doc.paths)) {
    t.ok(path.startsWith('/'), `${path} starts with /`)
    t.notMatch(path, /:\w/, `${path} uses {param}, not :param`)
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method)) continue
      t.ok(op.responses && Object.keys(op.responses).length > 0, `${method} ${path} has responses`)
      t.ok(['guest', 'admin', 'read'].includes(op['x-access'] ?? ''), `${method} ${path} states its access`)
      if (op['x-access'] === 'admin') t.same(op.security, [{ adminToken: [] }], `${method} ${path} asks for the token`)
      for (const p of op.parameters ?? []) t.ok(['query', 'path', 'header', 'cookie'].includes(p.in), `parameter ${p.name} has a valid "in"`)
    }
  }
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/docs')), 'the UI\'s own routes are not listed')
  t.equal(doc.paths['/metrics']!['get']!['x-access'], 'read')

  const status = doc.paths['/api/v1/status']!['get']!
  t.ok(status.responses?.['200'], 'status has a 200 response schema from zod')
})

t.test('Swagger UI at /docs', async (t) => {
  const { app } = await build(t)
  const ui = await app.inject({ url: '/docs/', remoteAddress: '192.168.1.50' })
  t.equal(ui.statusCode, 200)
  t.match(ui.body, /swagger-ui/i)
  t.match(ui.headers['content-security-policy'], /default-src 'self'/, 'static CSP on')
})

t.test('GET /: browsers go to the dashboard, other clients get a pointer', async (t) => {
  const { app } = await build(t)
  const browser = await app.inject({ url: '/', headers: { accept: 'text/html,application/xhtml+xml' }, remoteAddress: '192.168.1.50' })
  t.equal(browser.statusCode, 302)
  t.equal(browser.headers.location, '/ui/')
  const client = await app.inject({ url: '/', remoteAddress: '192.168.1.50' })
  t.match(client.json(), { service: 'kiosk-vm-watchdog', web_ui: '/ui/', docs: '/docs' })
  const ui = await app.inject({ url: '/ui/', remoteAddress: '192.168.1.50' })
  t.equal(ui.statusCode, 200)
  t.match(ui.headers['content-security-policy'], /default-src 'self'/)
  t.equal((await app.inject({ url: '/ui/app.js' })).statusCode, 200)
})
