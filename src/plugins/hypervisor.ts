// Decorates the app with the Hypervisor it was built with, connects it (libvirt being down at
// start is not fatal: the binding keeps reconnecting) and closes it with the app.
import fp from 'fastify-plugin'
import type { Hypervisor } from '../libvirt/index.ts'

declare module 'fastify' {
  interface FastifyInstance {
    hypervisor: Hypervisor
  }
}

export interface HypervisorPluginOptions {
  hypervisor: Hypervisor
}

export default fp<HypervisorPluginOptions>(async function hypervisorPlugin (app, { hypervisor }) {
  app.decorate('hypervisor', hypervisor)
  try {
    await hypervisor.connect()
  } catch (err) {
    app.log.error({ uri: hypervisor.uri, err }, 'libvirt is not reachable; retrying in the background')
  }
  hypervisor.onConnection((event) => {
    if (event.type === 'connected') app.log.info({ uri: event.uri }, 'libvirt connection (re)established')
  })
  app.addHook('onClose', async () => { await hypervisor.close() })
}, { name: 'hypervisor', fastify: '5.x' })
