// deploy/systemd/mxgate.service: checked by systemd itself (`systemd-analyze verify`), and holding what the
// README promises: graceful stop by SIGTERM within a timeout above the drain, restart on failure, port 25 as a
// non-root user, a read-only system but for the spool.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { DEFAULTS } from '../src/config/schema'
import { stopBoundMs } from '../src/haraka/shutdown'
import { ROOT } from './helpers/mxgate-process'
import { findTool, skipWithout } from './helpers/tools'

const UNIT = path.join(ROOT, 'deploy', 'systemd', 'mxgate.service')
const ANALYZE = '/usr/bin/systemd-analyze'
/**
 * How long mxgate may take to stop with the default drain settings ([smtp] shutdown_grace + shutdown_timeout + the
 * close margin: 55 s). The supervisor must wait longer.
 */
const STOP_BOUND_S = stopBoundMs(DEFAULTS.smtp) / 1000

/** The unit's [Service] keys (a key given twice keeps every value). */
function service(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>()
  let section = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s) {
      section = s[1]!
      continue
    }
    if (section !== 'Service') continue
    const eq = line.indexOf('=')
    const k = line.slice(0, eq)
    keys.set(k, [...(keys.get(k) ?? []), line.slice(eq + 1)])
  }
  return keys
}

const text = readFileSync(UNIT, 'utf8')
const svc = service(text)
const one = (k: string) => svc.get(k)?.at(-1)

const analyze = findTool([ANALYZE, 'systemd-analyze'])
const skip = skipWithout(t, analyze, 'systemd-analyze', 'apt-get install -y --no-install-recommends systemd')

t.test('systemd-analyze verify accepts the unit without a warning', { skip }, async (t) => {
  // verify checks that ExecStart's program exists: point it at this test's own node.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-unit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const copy = path.join(dir, 'mxgate.service')
  writeFileSync(copy, text.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`))
  const r = spawnSync(analyze!, ['verify', copy], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr.trim(), '', 'no warning (an unknown key or a bad value is only a warning to systemd)')

  const typo = path.join(dir, 'typo.service')
  writeFileSync(typo, text.replace('ProtectSystem=strict', 'ProtectSystem=strictly'))
  const bad = spawnSync(analyze!, ['verify', typo], { encoding: 'utf8', timeout: 60_000 })
  t.match(bad.stderr, /protect system value/, 'a bad value would be noticed')
})

t.test('graceful stop through the drain; restart on failure; reload by SIGHUP', async (t) => {
  t.equal(one('KillSignal'), 'SIGTERM')
  t.equal(one('KillMode'), 'mixed', 'SIGTERM to mxgate only: it stops its own workers')
  const stopSec = Number(one('TimeoutStopSec'))
  const needed = Math.max(STOP_BOUND_S, DEFAULTS.relay.deadlineMs / 1000)
  t.ok(stopSec > needed, `TimeoutStopSec ${stopSec}s > the drain's bound (${needed}s)`)
  t.equal(one('Restart'), 'on-failure')
  t.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID')
  t.match(one('ExecStart'), /bin\/mxgate\.js start --config \/etc\/mxgate$/)
  t.notOk(svc.has('Environment') && svc.get('Environment')!.some((e) => e.startsWith('MXGATE_BACKENDS')))
})

t.test('port 25 as a non-root user, hardened, writable only where the spool is', async (t) => {
  t.ok(one('User') && one('User') !== 'root' && one('User') !== '0', `User=${one('User')}`)
  t.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE')
  t.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE')
  for (const [k, v] of [
    ['NoNewPrivileges', 'yes'],
    ['ProtectSystem', 'strict'],
    ['PrivateTmp', 'yes'],
    ['ProtectHome', 'yes'],
    ['PrivateDevices', 'yes'],
    ['RestrictSUIDSGID', 'yes'],
  ]) {
    t.equal(one(k!), v, `${k}=${v}`)
  }
  const spool = svc
    .get('Environment')
    ?.find((e) => e.startsWith('MXGATE_SPOOL_DIR='))
    ?.split('=')[1]
  t.ok(spool, 'the spool dir is set')
  const writable = (one('ReadWritePaths') ?? '').split(/\s+/)
  t.ok(
    writable.some((w) => spool!.startsWith(`${w}/`) || spool === w),
    `${spool} is under ReadWritePaths (${writable.join(' ')})`,
  )
  t.ok(spool!.startsWith(`/var/lib/${one('StateDirectory')}/`), 'and under StateDirectory, owned by the user')
})
