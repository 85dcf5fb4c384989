// [canary] settings: defaults, environment, durations, and the exact error for every bad value.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config/load'
import { redactConfig } from '../src/config/redact'

function dirWith(t: Test, ini: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-canary-cfg-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const BASE = '[smtp]\ndomains = example.com, example.org\n[backend.mx1]\naddress = 127.0.0.1:2601\n'

function load(t: Test, canary: string, env: NodeJS.ProcessEnv = {}) {
  return loadConfig({ baseDir: dirWith(t, `${BASE}[canary]\n${canary}`), env })
}

function loadError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('off by default; defaults 10s and 2m once an address is set', async (t) => {
  const off = loadConfig({ baseDir: dirWith(t, BASE), env: {} })
  t.equal(off.canary.address, null)
  const on = load(t, 'address = canary@example.com\nreturn_address = canary-return@example.org\n')
  t.same(on.canary, {
    address: 'canary@example.com',
    returnAddress: 'canary-return@example.org',
    intervalMs: 10_000,
    timeoutMs: 120_000,
    webhookToken: null,
    probationReturns: 1,
  })
})

t.test('environment: address, return, interval and timeout (durations as elsewhere)', async (t) => {
  const cfg = load(t, '', {
    MXGATE_CANARY_ADDRESS: 'Probe@EXAMPLE.com',
    MXGATE_CANARY_RETURN: '<back@example.com>',
    MXGATE_CANARY_INTERVAL: '250ms',
    MXGATE_CANARY_TIMEOUT: '2m',
    MXGATE_CANARY_WEBHOOK_TOKEN: 'a-webhook-token-0123456789',
  })
  t.equal(cfg.canary.address, 'Probe@example.com', 'the domain is lower-cased, the local part kept')
  t.equal(cfg.canary.returnAddress, 'back@example.com')
  t.equal(cfg.canary.intervalMs, 250)
  t.equal(cfg.canary.timeoutMs, 120_000)
  t.equal(redactConfig(cfg).canary.webhookToken, '***', 'check-config masks the webhook token')
})

t.test('bad values: each error names the source, the key and the fix', async (t) => {
  const dir = (ini: string) => dirWith(t, `${BASE}[canary]\n${ini}`)
  const cases: [string, NodeJS.ProcessEnv, string][] = [
    [
      'address = canary@elsewhere.test\nreturn_address = r@example.com\n',
      {},
      "canary.address: canary@elsewhere.test is not in one of mxgate's domains (example.com, example.org); canaries must go to a mailbox the backends deliver for us",
    ],
    [
      'address = canary@example.com\nreturn_address = r@elsewhere.test\n',
      {},
      "canary.return_address: r@elsewhere.test is not in one of mxgate's domains (example.com, example.org); mxgate takes returns only for its own domains",
    ],
    [
      'address = not an address\n',
      {},
      'canary.address: "not an address" is not a plain mailbox; write e.g. canary@example.com (or leave it empty)',
    ],
    [
      'address = canary@example.com\nreturn_address = CANARY@example.com\n',
      {},
      'canary.return_address: must differ from canary.address: mxgate consumes mail to the return address, so canaries to it would never reach a backend',
    ],
    [
      'address = canary@example.com\n',
      {},
      'canary.address: canaries are on but nothing can bring them back; set canary.return_address (MXGATE_CANARY_RETURN) or canary.webhook_token',
    ],
    [
      'return_address = r@example.com\n',
      {},
      'canary.return_address: is set but canary.address is not; canaries are off without an address (set both, or neither)',
    ],
    ['interval = soon\n', {}, 'canary.interval: "soon" is not a duration; write e.g. 250ms, 10s, 2m'],
    [
      '',
      { MXGATE_CANARY_TIMEOUT: '5ms' },
      'env MXGATE_CANARY_TIMEOUT: canary.timeout: "5ms" is too short; use at least 100ms',
    ],
    [
      'address = canary@example.com\nreturn_address = r@example.com\ninterval = 1m\ntimeout = 30s\n',
      {},
      'canary.timeout: must not be below canary.interval (60000ms): a canary needs time to come back before the next',
    ],
    [
      'webhook_token = short\n',
      {},
      'canary.webhook_token: must be at least 16 of A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -hex 24)',
    ],
    ['probation_returns = some\n', {}, 'canary.probation_returns: "some" must be a whole number from 0 to 1000'],
    [
      'colour = blue\n',
      {},
      'canary.colour: unknown key; [canary] knows: address, return_address, interval, timeout, webhook_token, probation_returns',
    ],
  ]
  for (const [ini, env, want] of cases) {
    const msg = loadError(() => loadConfig({ baseDir: dir(ini), env }))
    t.ok(msg.endsWith(want), `${JSON.stringify(ini)} ${JSON.stringify(env)}\n got: ${msg}`)
    if (Object.keys(env).length === 0) t.match(msg, /mxgate\.ini:\d+: /, 'names the file and line')
  }
})
