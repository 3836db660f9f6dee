import { openHypervisor } from '/work/main/src/libvirt/index.ts'
const h = openHypervisor('test:///default', { reconnect: false })
await h.connect()
h.onLifecycle((e) => console.log('event', e.type, e.detailName))
try {
  await h.destroy('test')
  console.log(await h.createSnapshot('test', '<domainsnapshot><name>off</name></domainsnapshot>'))
  console.log('before revert', (await h.domainState('test')).state)
  await h.revertToSnapshot('test', 'off')
  await new Promise(r => setTimeout(r, 100))
  console.log('after revert', await h.domainState('test'))
} finally { await h.close() }
