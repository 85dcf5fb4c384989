// The operations settings (src/config/ops-keys.ts): shutdown timing and PROXY hosts, with the exact error text for bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config/load'
import { proxyAllowList } from '../src/haraka/proxy'

const NO_BASE = path.join(os.tmpdir(), 'mxgate-no-such-dir')
const BASE_ENV = { MXGATE_BACKENDS: 'mx1=127.0.0.1:2601', MXGATE_DOMAINS: 'example.com' }

function dirWith(t: Test, ini: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-cfg-ops-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const load = (env: Record<string, string>, overrideDir?: string) =>
  loadConfig({ baseDir: NO_BASE, overrideDir, env: { ...BASE_ENV, ...env } })

function loadError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('shutdown: 5s grace and 40s timeout by default; file and environment set them', async (t) => {
  const d = load({})
  t.equal(d.smtp.shutdownGraceMs, 5_000)
  t.equal(d.smtp.shutdownTimeoutMs, 40_000)
  const dir = dirWith(t, '[smtp]\nshutdown_grace = 15s\nshutdown_timeout = 2m\n')
  const f = load({}, dir)
  t.equal(f.smtp.shutdownGraceMs, 15_000)
  t.equal(f.smtp.shutdownTimeoutMs, 120_000)
  const e = load({ MXGATE_SHUTDOWN_GRACE: '0', MXGATE_SHUTDOWN_TIMEOUT: '10s' }, dir)
  t.equal(e.smtp.shutdownGraceMs, 0, '0 closes the listener at once')
  t.equal(e.smtp.shutdownTimeoutMs, 10_000)
})

t.test('shutdown: bad values name the source, the key and the fix', async (t) => {
  t.equal(
    loadError(() => load({ MXGATE_SHUTDOWN_GRACE: 'a while' })),
    'env MXGATE_SHUTDOWN_GRACE: smtp.shutdown_grace: "a while" is not a duration; write e.g. 5s (0 closes the listener at once)',
  )
  const dir = dirWith(t, '[smtp]\nshutdown_timeout = 500ms\n')
  t.equal(
    loadError(() => load({}, dir)),
    `${dir}/mxgate.ini:2: smtp.shutdown_timeout: "500ms" must be from 1s to 3600s, e.g. 60s`,
  )
})

t.test('proxy_hosts: addresses and CIDR blocks, normalised; none by default', async (t) => {
  t.same(load({}).smtp.proxyHosts, [])
  t.same(load({ MXGATE_PROXY_HOSTS: '10.0.0.5, 10.0.1.0/24 FD00::/64,10.0.0.5' }).smtp.proxyHosts, [
    '10.0.0.5/32',
    '10.0.1.0/24',
    'fd00::/64',
  ])
  const dir = dirWith(t, '[smtp]\nproxy_hosts = ::1\n')
  t.same(load({}, dir).smtp.proxyHosts, ['::1/128'])
})

t.test('proxy_hosts: bad entries name the source, the key and the fix', async (t) => {
  const fix = 'list the load balancers, e.g. proxy_hosts = 10.0.0.5, 10.0.1.0/24, fd00::/64'
  t.equal(
    loadError(() => load({ MXGATE_PROXY_HOSTS: '10.0.0.0/33' })),
    `env MXGATE_PROXY_HOSTS: smtp.proxy_hosts: "10.0.0.0/33" is not an IP address or CIDR block; ${fix}`,
  )
  t.equal(
    loadError(() => load({ MXGATE_PROXY_HOSTS: 'lb.example.com' })),
    `env MXGATE_PROXY_HOSTS: smtp.proxy_hosts: "lb.example.com" is not an IP address or CIDR block; ${fix}`,
  )
  t.equal(
    loadError(() => load({ MXGATE_PROXY_HOSTS: '10.0.0.1/8/2' })),
    `env MXGATE_PROXY_HOSTS: smtp.proxy_hosts: "10.0.0.1/8/2" is not an IP address or CIDR block; ${fix}`,
  )
  t.equal(
    loadError(() => load({ MXGATE_PROXY_HOSTS: '0.0.0.0/0' })),
    `env MXGATE_PROXY_HOSTS: smtp.proxy_hosts: "0.0.0.0/0" trusts every address, so any client could claim any address; ${fix}`,
  )
})

t.test('the allow list matches addresses inside the blocks, IPv4-mapped IPv6 peers as IPv4', async (t) => {
  const allowed = proxyAllowList(['10.0.1.0/24', '192.0.2.7/32', 'fd00::/64'])
  t.ok(allowed('10.0.1.200'))
  t.ok(allowed('::ffff:10.0.1.3'))
  t.ok(allowed('192.0.2.7'))
  t.notOk(allowed('192.0.2.8'))
  t.ok(allowed('fd00::1'))
  t.notOk(allowed('fd00:0:0:1::1'))
  t.notOk(allowed('not an address'))
  t.notOk(proxyAllowList([])('127.0.0.1'), 'an empty list trusts nobody')
})

t.test('log: level and redact_addresses from the file or the environment, validated', async (t) => {
  t.same(load({}).log, { level: 'info', redactAddresses: false })
  const dir = dirWith(t, '[log]\nlevel = debug\nredact_addresses = true\n')
  t.same(load({}, dir).log, { level: 'debug', redactAddresses: true })
  t.same(load({ MXGATE_LOG_LEVEL: 'WARN', MXGATE_LOG_REDACT_ADDRESSES: 'no' }, dir).log, {
    level: 'warn',
    redactAddresses: false,
  })
  t.equal(
    loadError(() => load({ MXGATE_LOG_LEVEL: 'verbose' })),
    'env MXGATE_LOG_LEVEL: log.level: "verbose" must be one of trace, debug, info, warn, error, fatal, silent',
  )
  const bad = dirWith(t, '[log]\nredact_addresses = sometimes\n')
  t.equal(
    loadError(() => load({}, bad)),
    `${bad}/mxgate.ini:2: log.redact_addresses: "sometimes" must be true or false`,
  )
})
