// guest_network, api_port, firewall. Network definitions are real files in a scratch dir (read
// as the doctor reads /etc/libvirt/qemu/networks); `ip` runs for real (the scratch network's
// bridge is `lo`, which every host has); firewall rule text is recorded output.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { apiPortCheck, firewallCheck, guestNetworkCheck, judgeIptables, judgeNft } from '../../src/doctor/checks/network.ts'
import { overlapsSubnet } from '../../src/net/addresses.ts'
import { buildApp } from '../../src/app.ts'
import { parseConfig } from '../../src/config/load.ts'
import { openHypervisor } from '../../src/libvirt/index.ts'
import { DEFAULT_NETWORK_XML, QCOW2_DISK, USER_NET, exit, missing, ok, scratch, testDomain } from './helpers.ts'

t.test('guest_network: libvirt network "default" (test:///default\'s interface)', async (t) => {
  const open = scratch(t) // api_host 0.0.0.0, network bridge lo (present)
  const r = await open.run(guestNetworkCheck('test'))
  t.equal(r.level, 'ok')
  t.match(r.message, 'network "default": the guest reaches the host at 192.168.122.1: guest scripts use http://192.168.122.1:8000')

  const loopback = scratch(t, { config: { api_host: '127.0.0.1' } })
  const f = await loopback.run(guestNetworkCheck('test'))
  t.equal(f.level, 'fail')
  t.match(f.message, 'but api_host 127.0.0.1 listens on loopback only')
  t.equal(f.fix, 'set api_host: 0.0.0.0 (or 192.168.122.1) in the config and restart the service')

  const specific = scratch(t, { config: { api_host: '192.168.122.1' } })
  t.equal((await specific.run(guestNetworkCheck('test'))).level, 'ok')

  const refused = scratch(t, { config: { security: { guest_networks: ['10.0.2.0/24'] } } })
  const g = await refused.run(guestNetworkCheck('test'))
  t.equal(g.level, 'fail')
  t.match(g.message, /subnet 192\.168\.122\.1\/24 is not in security\.guest_networks/)

  const inactive = scratch(t)
  writeFileSync(join(inactive.dir, 'networks', 'default.xml'), DEFAULT_NETWORK_XML.replace("name='lo'", "name='kvwnosuchbr0'"))
  const w = await inactive.run(guestNetworkCheck('test'))
  t.equal(w.level, 'warn')
  t.match(w.message, 'its bridge kvwnosuchbr0 is absent: the network is not active')
  t.equal(w.fix, 'virsh net-start default && virsh net-autostart default')

  const unreadable = scratch(t, { host: { paths: { libvirtNetworks: '/nonexistent' } } })
  t.match(await unreadable.run(guestNetworkCheck('test')), { level: 'warn', message: /cannot read its definition \/nonexistent\/default\.xml \(ENOENT\)/ })
})

t.test('guest_network: user networking, bridges, none', async (t) => {
  const domains = [
    testDomain('usernet', QCOW2_DISK + USER_NET),
    testDomain('nonet', QCOW2_DISK),
    testDomain('bridged', QCOW2_DISK + "<interface type='bridge'><source bridge='lo'/></interface>"),
    testDomain('macvtap', QCOW2_DISK + "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>")
  ]
  const vms = { vm_name: 'usernet', vms: [{ name: 'nonet' }, { name: 'bridged' }, { name: 'macvtap' }] }
  const userNet = { guest_networks: ['127.0.0.0/8', '::1'] }
  const s = scratch(t, { config: { ...vms, api_host: '127.0.0.1', security: userNet }, domains })
  t.match(await s.run(guestNetworkCheck('usernet')), { level: 'ok', message: /user networking: the guest reaches the host at 10\.0\.2\.2 \(= host 127\.0\.0\.1\): guest scripts use http:\/\/10\.0\.2\.2:8000/ })
  // Loopback not listed (the default): the guest's requests are the host's (a technician's).
  const notListed = scratch(t, { config: { ...vms, api_host: '127.0.0.1' }, domains })
  t.match(await notListed.run(guestNetworkCheck('usernet')), { level: 'warn', message: /not in security\.guest_networks: they are taken as the host's/, fix: /add 127\.0\.0\.0\/8/ })
  const withToken = scratch(t, { config: { ...vms, api_host: '127.0.0.1', security: { admin_token: 'a-token-of-sixteen-chars' } }, domains })
  t.match(await withToken.run(guestNetworkCheck('usernet')), { level: 'fail', message: /revert requests are refused \(401\)/ })
  t.match(await s.run(guestNetworkCheck('nonet')), { level: 'fail', message: /has no network interface/ })
  t.match(await s.run(guestNetworkCheck('bridged')), { level: 'fail', message: /bridge lo: .*listens on loopback only/ })
  t.match(await s.run(guestNetworkCheck('macvtap')), { level: 'warn', message: /macvtap/ })

  const specific = scratch(t, { config: { ...vms, api_host: '192.0.2.10' }, domains })
  t.match(await specific.run(guestNetworkCheck('usernet')), { level: 'fail', message: /api_host 192\.0\.2\.10 does not listen on loopback/, fix: 'set api_host: 0.0.0.0 or 127.0.0.1' })
  const wildcard = scratch(t, { config: vms, domains })
  t.match(await wildcard.run(guestNetworkCheck('bridged')), { level: 'ok', message: /bridge lo: the guest reaches the host at 127\.0\.0\.1/ })
})

t.test('overlapsSubnet', async (t) => {
  t.equal(overlapsSubnet(['192.168.122.0/24'], '192.168.122.1', 24), true)
  t.equal(overlapsSubnet(['192.168.0.0/16'], '192.168.122.1', 24), true)
  t.equal(overlapsSubnet(['192.168.122.50'], '192.168.122.1', 24), true)
  t.equal(overlapsSubnet(['10.0.2.0/24', '::1'], '192.168.122.1', 24), false)
  t.equal(overlapsSubnet(['10.0.2.0/24'], 'fe80::1', 64), null)
})

async function listen (server: { listen: (o: object, cb: () => void) => unknown, address: () => unknown }): Promise<number> {
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  return (server.address() as AddressInfo).port
}

t.test('api_port: free (ok), taken by another program (fail), taken by this service (ok)', async (t) => {
  const sockets = new Set<import('node:net').Socket>()
  const other = createServer((socket) => { sockets.add(socket); socket.end('SSH-2.0-not-http\r\n') })
  const port = await listen(other)
  t.teardown(() => other.close())
  const taken = await scratch(t, { config: { api_host: '127.0.0.1', api_port: port } }).run(apiPortCheck)
  t.equal(taken.level, 'fail')
  t.match(taken.message, `127.0.0.1:${port} is in use by another program`)
  t.match(taken.fix, `sudo ss -ltnp 'sport = :${port}'`)
  for (const socket of sockets) socket.destroy()
  await new Promise<void>((resolve) => other.close(() => resolve()))
  t.match(await scratch(t, { config: { api_host: '127.0.0.1', api_port: port } }).run(apiPortCheck), { level: 'ok', message: /is free/ })

  t.match(await scratch(t, { config: { api_host: '192.0.2.10', api_port: port } }).run(apiPortCheck), { level: 'fail', message: 'api_host 192.0.2.10 is not an address of this host' })

  // The real service on a loopback port.
  const app = await buildApp({ config: parseConfig({ data_dir: join(scratch(t).dir, 'data') }, {}), hypervisor: openHypervisor('test:///default', { reconnect: false }) })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const servicePort = (app.server.address() as AddressInfo).port
  const ours = await scratch(t, { config: { api_host: '127.0.0.1', api_port: servicePort } }).run(apiPortCheck)
  t.equal(ours.level, 'ok')
  t.match(ours.message, `127.0.0.1:${servicePort} is in use by kiosk-vm-watchdog (the service is running: version `)
})

t.test('judgeIptables / judgeNft read recorded rule sets', async (t) => {
  t.equal(judgeIptables('-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n', 8000).verdict, 'open')
  t.equal(judgeIptables('-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 8000 -j ACCEPT\n', 8000).verdict, 'accepts')
  t.equal(judgeIptables('-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n', 8000).verdict, 'default_drop')
  t.equal(judgeIptables('-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 8000 -j REJECT --reject-with icmp-port-unreachable\n', 8000).verdict, 'drops')
  t.equal(judgeIptables('-P INPUT ACCEPT\n-A INPUT -p tcp -m multiport --dports 22,7000:9000 -j ACCEPT\n-A INPUT -j DROP\n', 8000).verdict, 'accepts')
  t.equal(judgeIptables('-P INPUT ACCEPT\n-A INPUT -j DROP\n', 8000).verdict, 'default_drop')

  const nftDrop = `table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tiif "lo" accept
\t\ttcp dport { 22, 80 } accept
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t}
}
`
  t.equal(judgeNft(nftDrop, 8000).verdict, 'default_drop')
  t.equal(judgeNft(nftDrop.replace('{ 22, 80 }', '{ 22, 8000 }'), 8000).verdict, 'accepts')
  t.equal(judgeNft(nftDrop.replace('policy drop', 'policy accept').replace('tcp dport { 22, 80 } accept', 'tcp dport 8000 drop'), 8000).verdict, 'drops')
  t.equal(judgeNft('table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n', 8000).verdict, 'open')
  // A drop in another chain (forward) is not about our port.
  t.equal(judgeNft('table ip nat {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy drop;\n\t}\n}\n', 8000).verdict, 'open')
})

t.test('firewall: accepts (ok), drops (fail), default drop (warn), no CAP_NET_ADMIN (ok: not an alarm), unreadable (warn), the real host', async (t) => {
  const accept = await scratch(t, { commands: { 'nft list ruleset': missing, 'iptables -S': ok('-P INPUT DROP\n-A INPUT -p tcp -m tcp --dport 8000 -j ACCEPT\n') } }).run(firewallCheck)
  t.match(accept, { level: 'ok', message: /accepts TCP port 8000: iptables: -A INPUT -p tcp -m tcp --dport 8000 -j ACCEPT/ })

  const drop = await scratch(t, { commands: { 'nft list ruleset': ok('table inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 8000 drop\n }\n}\n'), 'iptables -S': missing } }).run(firewallCheck)
  t.match(drop, { level: 'fail', message: /drops TCP port 8000: nft: tcp dport 8000 drop/, fix: /tcp dport 8000 accept/ })

  const closed = await scratch(t, { commands: { 'nft list ruleset': missing, 'iptables -S': ok('-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n') } }).run(firewallCheck)
  t.match(closed, { level: 'warn', message: /drops input by default and no rule names TCP port 8000/ })

  const unreadable = await scratch(t, {
    commands: {
      'nft list ruleset': exit(1, '', 'Operation not permitted (you must be root)\n'),
      'iptables -S': exit(4, '', 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n')
    }
  }).run(firewallCheck)
  // Without CAP_NET_ADMIN (the service under its own hardening) that is expected, not an alarm.
  t.match(unreadable, { level: 'ok', message: /^firewall not readable from here: user \S+ lacks CAP_NET_ADMIN; to check it, run as root: sudo nft list ruleset/ })
  const inService = await scratch(t, {
    commands: { 'nft list ruleset': exit(1, '', 'netlink: Error: cache initialization failed: Operation not permitted\n'), 'iptables -S': missing }
  }).run(firewallCheck, { service: { watchdogs: new Map() } })
  t.match(inService, { level: 'ok', message: /the service runs without capabilities \(its hardening\)/ })
  const broken = await scratch(t, {
    commands: { 'nft list ruleset': { code: null, stdout: '', stderr: '', error: 'timeout' }, 'iptables -S': exit(4, '', 'iptables: Permission denied (you must be root)\n') }
  }).run(firewallCheck)
  t.equal(broken.level, 'warn')
  t.match(broken.message, /cannot read the firewall rules \(nft: timeout; iptables: iptables: Permission denied/)

  // This host as it is: whatever it says, it is a verdict, not a crash.
  const real = await scratch(t).run(firewallCheck)
  t.match(real.level, /^(ok|warn|fail)$/)
  t.notMatch(real.message, /the check itself failed|timed out/)
})
