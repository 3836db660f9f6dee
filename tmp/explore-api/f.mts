// Checks frameworkErrors wired as app.ts would: a copy of buildApp's Fastify options with frameworkErrors.
import Fastify from 'fastify'
import errorsPlugin, { frameworkErrors } from '/work/main/src/plugins/errors.ts'
const app = Fastify({ frameworkErrors, routerOptions: { maxParamLength: 200 } })
await app.register(errorsPlugin)
app.get('/x/:p', async () => 'ok')
await app.ready()
for (const url of ['/x/%ZZ', '/x/' + 'a'.repeat(300), '/x/ok']) { const r = await app.inject({ url }); console.log(url.slice(0, 20), r.statusCode, r.headers['content-type'], r.body) }
