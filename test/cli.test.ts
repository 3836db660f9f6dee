// The CLI's help: `--help` is the overview, `COMMAND --help` and `help COMMAND` that command's own
// text, `help` is a command (not "unknown command"), an unknown topic is a usage error (64).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

function run (args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KVW_CONFIG: '' } })
  return { status: r.status, out: r.stdout, err: r.stderr }
}

t.test('help: the overview, and each command\'s own text', async (t) => {
  const overview = run(['--help'])
  t.equal(overview.status, 0, overview.err)
  t.match(overview.out, /^usage: kiosk-vm-watchdog \[command\]/)
  for (const command of ['serve', 'check-config', 'doctor', 'help']) t.match(overview.out, new RegExp(`^ {2}${command}\\b`, 'm'), `lists ${command}`)
  t.same(run(['help']), overview, '`help` is the overview')

  const texts = new Set<string>()
  for (const command of ['serve', 'check-config', 'doctor']) {
    const own = run([command, '--help'])
    t.equal(own.status, 0, own.err)
    t.match(own.out, new RegExp(`^usage: kiosk-vm-watchdog ${command}\\b`), `${command} --help is ${command}'s usage`)
    t.match(own.out, /exit codes: /, `${command} --help names its exit codes`)
    t.same(run(['help', command]), own, `help ${command} = ${command} --help`)
    t.same(run([command, '-h']), own, `${command} -h`)
    texts.add(own.out)
  }
  t.equal(texts.size, 3, 'three different texts')
  t.match(run(['--check', '--help']).out, /^usage: kiosk-vm-watchdog check-config/, '--check --help is check-config\'s')
  t.match(run(['doctor', '--help']).out, /KVW_CONFIG=\/etc\/kiosk-vm-watchdog\/config\.yaml kiosk-vm-watchdog doctor/)
  t.match(run(['help', 'help']).out, /^usage: kiosk-vm-watchdog help \[COMMAND\]/)
})

t.test('an unknown command or help topic is a usage error', async (t) => {
  const topic = run(['help', 'nosuch'])
  t.equal(topic.status, 64)
  t.match(topic.err, /^unknown command "nosuch"\nusage: kiosk-vm-watchdog/)
  const command = run(['nosuch'])
  t.equal(command.status, 64)
  t.match(command.err, /^unknown command "nosuch"/)
})
