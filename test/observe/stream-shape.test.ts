// The live stream and /status show a watchdog through one serializer (src/routes/views.ts): the
// dashboard reads the same snake_case fields a script reads from /status.
import t from 'tap'
import { get, type ClientRequest } from 'node:http'
import { build, T0 } from '../helpers/app.ts'
import type { StreamMessage } from '../../src/routes/stream.ts'

/** The first `state` message of the stream; the connection is closed after it. */
async function firstMessage (url: string): Promise<StreamMessage> {
  let request: ClientRequest | null = null
  try {
    return await new Promise<StreamMessage>((resolve, reject) => {
      request = get(`${url}/api/v1/events/stream`, { agent: false }, (res) => {
        let buf = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buf += chunk
          const m = /^event: state\ndata: (.*)\n\n/m.exec(buf)
          if (m) resolve(JSON.parse(m[1]!) as StreamMessage)
        })
        res.on('error', reject)
      })
      request.on('error', reject)
    })
  } finally {
    (request as ClientRequest | null)?.destroy()
  }
}

t.test('the stream sends /status\'s watchdog view, field for field', async (t) => {
  const { app, settled } = await build(t)
  app.watchdogs.get('test')!.heartbeat({ seq: 3 })
  // The VM state read at start must be in before both reads, or one of them may lack it.
  await settled()
  await app.listen({ host: '127.0.0.1', port: 0 })
  const message = await firstMessage(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`)
  const status = (await app.inject('/api/v1/status')).json()
  t.same(message.vms, [status.watchdog], 'the same fields and values (the fake clock did not move)')
  t.match(message.vms[0], { vm: 'test', state: 'healthy', last_seq: 3, heartbeats_total: 1, last_heartbeat: new Date(T0).toISOString(), libvirt_connected: true })
  t.notOk('heartbeatsTotal' in message.vms[0]!, 'no camelCase field')
})
