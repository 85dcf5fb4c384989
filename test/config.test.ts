// Config parsing: defaults, layering, environment overrides, and the exact error text for bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { parseIni } from '../src/config/ini'
import { ConfigError, loadConfig } from '../src/config/load'
import { parseDuration, parseHostPort, parseSize } from '../src/config/units'
import { runMxgate } from './helpers/mxgate-process'

function dirWith(t: Test, ini: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-cfg-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const MINIMAL = '[smtp]\ndomains = example.com\n[backend.mx1]\naddress = 127.0.0.1:2601\n'

function loadError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('units', async (t) => {
  t.equal(parseDuration('30s'), 30_000)
  t.equal(parseDuration('500ms'), 500)
  t.equal(parseDuration('5m'), 300_000)
  t.equal(parseDuration('2'), 2000, 'a bare number is seconds')
  t.equal(parseDuration('soon'), null)
  t.equal(parseSize('50MB'), 52_428_800)
  t.equal(parseSize('512k'), 524_288)
  t.equal(parseSize('12 parsecs'), null)
  t.same(parseHostPort('[::1]:25'), { host: '::1', port: 25 })
  t.same(parseHostPort('mx.example.com:2525'), { host: 'mx.example.com', port: 2525 })
  t.equal(parseHostPort('127.0.0.1:99999'), null)
  t.equal(parseHostPort('127.0.0.1'), null)
})

t.test('ini: comments, quotes, and errors with line numbers', async (t) => {
  const s = parseIni('; c\n[a]\nx = 1 ; trailing\ny = "q ; not a comment"\nurl = redis://h/0#x\n', 'f.ini')
  t.same(
    s[1]?.entries.map((e) => [e.key, e.value, e.line]),
    [
      ['x', '1', 3],
      ['y', 'q ; not a comment', 4],
      ['url', 'redis://h/0#x', 5],
    ],
  )
  t.throws(() => parseIni('[a]\nx=1\nx=2\n', 'f.ini'), { message: 'f.ini:3: key "x" appears twice in [a]' })
  t.throws(() => parseIni('[a\n', 'f.ini'), { message: 'f.ini:1: bad section header "[a"; expected [name]' })
  t.throws(() => parseIni('[a]\njunk\n', 'f.ini'), { message: 'f.ini:2: expected "key = value", got "junk"' })
})

t.test('the shipped config/mxgate.ini loads', async (t) => {
  const cfg = loadConfig({ baseDir: path.resolve(__dirname, '..', 'config'), env: {} })
  t.same(cfg.smtp.listen, { host: '127.0.0.1', port: 2525 })
  t.same(
    cfg.backends.map((b) => b.id),
    ['mx1', 'mx2'],
  )
  t.equal(cfg.relay.deadlineMs, 30_000)
  t.equal(cfg.breaker.errorThresholdPercent, 50)
  t.equal(cfg.spool.heldDsnMax, 1000, 'held DSN-only messages: at most 1000')
  t.equal(cfg.spool.heldDsnLifetimeMs, 3 * 86_400_000, 'for at most 3 days')
})

t.test('backend_client.session_wait: a duration, 0 allowed (fail over at once), 1s by default', async (t) => {
  t.equal(loadConfig({ baseDir: dirWith(t, MINIMAL), env: {} }).client.sessionWaitMs, 1000)
  const cfg = loadConfig({ baseDir: dirWith(t, `${MINIMAL}[backend_client]\nsession_wait = 0\n`), env: {} })
  t.equal(cfg.client.sessionWaitMs, 0)
  t.match(
    loadError(() => loadConfig({ baseDir: dirWith(t, `${MINIMAL}[backend_client]\nsession_wait = soon\n`), env: {} })),
    /session_wait.*"soon" is not a duration/,
  )
})

t.test('layering: override file over base, environment over both', async (t) => {
  const base = dirWith(t, `${MINIMAL}[relay]\nmax_attempts = 4\ndeadline = 20s\n`)
  const over = dirWith(t, '[relay]\nmax_attempts = 2\n[backend.a]\naddress = [::1]:25\nweight = 5\n')
  const cfg = loadConfig({
    baseDir: base,
    overrideDir: over,
    env: { MXGATE_LISTEN: '127.0.0.2:2600', MXGATE_DOMAINS: 'A.example, b.example.' },
  })
  t.equal(cfg.relay.maxAttempts, 2, 'override file wins')
  t.equal(cfg.relay.deadlineMs, 20_000, 'base file still applies')
  t.same(cfg.backends, [{ id: 'a', host: '::1', port: 25, weight: 5 }], 'backends come whole from the last layer')
  t.same(cfg.smtp.listen, { host: '127.0.0.2', port: 2600 })
  t.same(cfg.smtp.domains, ['a.example', 'b.example'])
  const env = loadConfig({ baseDir: base, env: { MXGATE_BACKENDS: 'x=10.0.0.1:25, y=10.0.0.2:2525*50' } })
  t.same(env.backends, [
    { id: 'x', host: '10.0.0.1', port: 25, weight: 100 },
    { id: 'y', host: '10.0.0.2', port: 2525, weight: 50 },
  ])
})

t.test('bad config: every error names the place, the key and the fix', async (t) => {
  const cases: [string, string, Record<string, string>?][] = [
    [`${MINIMAL}[smtp2]\nx = 1\n`, 'mxgate.ini:6: smtp2.x: unknown section [smtp2]; known sections: smtp, relay,'],
    [
      `${MINIMAL}[relay]\ndeadlin = 3s\n`,
      'mxgate.ini:6: relay.deadlin: unknown key; [relay] knows: deadline, max_attempts, second_opinion',
    ],
    [
      `${MINIMAL}[relay]\ndeadline = soon\n`,
      'mxgate.ini:6: relay.deadline: "soon" is not a duration; write e.g. 500ms, 30s, 5m, 2h',
    ],
    [`${MINIMAL}[detector]\nmode = enforcing\n`, 'mxgate.ini:6: detector.mode: "enforcing" must be enforce or observe'],
    [
      `${MINIMAL}[detector]\nbudget = 150%\n`,
      'mxgate.ini:6: detector.budget: "150%" must be a share from 0% to 100%, e.g. 33%',
    ],
    [
      `${MINIMAL}[detector]\nbucket = 10s\nretention = 20s\n`,
      'mxgate.ini:7: detector.retention: must be at least three buckets (detector.bucket × 3); raise it',
    ],
    [
      `${MINIMAL}[relay]\nconfirm_permanent = 5.1, 5.7\n`,
      'mxgate.ini:6: relay.confirm_permanent: "5.7" is not a class that can be confirmed; use some of 5.1, 5.2, 5.6, X.3.4, or none',
    ],
    [
      `${MINIMAL}[breaker]\nprobation_share = 0\n`,
      'mxgate.ini:6: breaker.probation_share: "0" must be a share from 1% to 100%, e.g. 10%',
    ],
    [
      `[smtp]\nmax_recipients = 99\n${MINIMAL.replace('[smtp]\n', '')}`,
      'mxgate.ini:2: smtp.max_recipients: "99" must be a whole number from 100 to 100000',
    ],
    [
      `${MINIMAL}[relay]\nmax_attempts = 0\n`,
      'mxgate.ini:6: relay.max_attempts: "0" must be a whole number from 1 to 20',
    ],
    [
      `${MINIMAL}[spool]\nheld_dsn_max = -1\n`,
      'mxgate.ini:6: spool.held_dsn_max: "-1" must be a whole number from 0 to 100000000',
    ],
    [
      `${MINIMAL}[spool]\nheld_dsn_lifetime = forever\n`,
      'mxgate.ini:6: spool.held_dsn_lifetime: "forever" is not a duration; write e.g. 500ms, 30s, 5m, 2h',
    ],
    [
      `${MINIMAL}[spool]\nheld_dsn_lifetime = 10ms\n`,
      'mxgate.ini:6: spool.held_dsn_lifetime: "10ms" is too short; use at least 1000ms',
    ],
    [
      MINIMAL,
      'env MXGATE_LISTEN: smtp.listen: "localhost" is not host:port; write e.g. 127.0.0.1:2525 or [::1]:2525',
      { MXGATE_LISTEN: 'localhost' },
    ],
    [
      `${MINIMAL}[backend.mx1]\naddress = 127.0.0.1:2602\n`,
      'mxgate.ini:5: (syntax): section [backend.mx1] appears twice',
    ],
    [
      MINIMAL,
      'env MXGATE_BACKENDS: backend a: duplicate backend id (first defined at env MXGATE_BACKENDS); ids must be unique',
      { MXGATE_BACKENDS: 'a=127.0.0.1:1,a=127.0.0.1:2' },
    ],
    [
      MINIMAL,
      'env MXGATE_BACKENDS: backends: "mx1:25" is not id=host:port; write e.g. mx1=127.0.0.1:2601,mx2=…',
      { MXGATE_BACKENDS: 'mx1:25' },
    ],
    [
      '[smtp]\ndomains = example.com\n',
      'backends: no backends configured; add a [backend.ID] section with address = host:port, or set MXGATE_BACKENDS',
    ],
    [
      '[backend.mx1]\naddress = 127.0.0.1:2601\n',
      'smtp.domains: no domains configured; mxgate accepts mail only for these',
    ],
    [
      `${MINIMAL}[backend.bad]\naddress = nowhere\n`,
      'mxgate.ini:6: backend.bad.address: "nowhere" is not host:port; write e.g. 10.0.0.5:25 or [::1]:25',
    ],
    [`${MINIMAL}[backend.b2]\nweight = 3\n`, 'mxgate.ini:5: backend.b2.address: missing; add address = host:port'],
    [
      MINIMAL,
      'env MXGATE_ADMIN_LISTEN: admin.listen: the admin API listens beyond loopback without a token;',
      { MXGATE_ADMIN_LISTEN: '0.0.0.0:8025' },
    ],
    [`${MINIMAL}[smtp]\n`, 'mxgate.ini:5: (syntax): section [smtp] appears twice'],
    [`top = 1\n${MINIMAL}`, 'mxgate.ini:1: top: setting outside any [section]; put it under e.g. [smtp]'],
  ]
  for (const [ini, expected, env] of cases) {
    const dir = dirWith(t, ini)
    const msg = loadError(() => loadConfig({ baseDir: dir, env: env ?? {} }))
    t.ok(msg.includes(expected), `${JSON.stringify(ini)} →\n  ${msg}`)
  }
  t.match(
    loadError(() => loadConfig({ baseDir: dirWith(t, MINIMAL), overrideDir: '/nonexistent-dir', env: {} })),
    '/nonexistent-dir/mxgate.ini: (file): file not found; check the path given to --config',
  )
})

t.test('mxgate start refuses a bad config with exit code 2 and the reason', async (t) => {
  const r = await runMxgate(['start'], { MXGATE_LISTEN: 'not-an-address', MXGATE_BACKENDS: 'a=127.0.0.1:1' })
  t.equal(r.code, 2)
  t.match(r.stderr, 'mxgate: configuration error: env MXGATE_LISTEN: smtp.listen: "not-an-address" is not host:port')
  const dir = dirWith(t, '[relay]\nmax_attempts = lots\n')
  const r2 = await runMxgate(['start', '--config', dir], { MXGATE_BACKENDS: '' })
  t.equal(r2.code, 2)
  t.match(r2.stderr, `${dir}/mxgate.ini:2: relay.max_attempts: "lots" must be a whole number from 1 to 20`)
  const r4 = await runMxgate(['check-config'], { MXGATE_REDIS_URL: 'http://redis:6379' })
  t.equal(r4.code, 2)
  t.match(r4.stderr, 'mxgate: configuration error: redis.url: invalid Redis URL "http://redis:6379": unknown scheme')
  const r5 = await runMxgate(['check-config'], { MXGATE_ADMIN_TOKEN: 'ops:abc,' })
  t.equal(r5.code, 2)
  t.match(r5.stderr, 'mxgate: configuration error: admin.token: admin.token entry 2 is empty')
  const r3 = await runMxgate(['start', '--config'])
  t.equal(r3.code, 2)
  t.match(r3.stderr, 'mxgate: --config needs a directory')
})

t.test('detector settings: shares, lists and durations are parsed into numbers', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(
    path.join(dir, 'mxgate.ini'),
    `${MINIMAL}[relay]\nconfirm_permanent = 5.1, x.3.4\n[detector]\nmode = observe\nmargin = 2%\nbucket = 500ms\nretention = 1m\n[breaker]\nprobation_share = 25%\n`,
  )
  const cfg = loadConfig({ baseDir: dir, env: {} })
  t.same(cfg.relay.confirmPermanent, ['5.1', 'X.3.4'])
  t.equal(cfg.detector.mode, 'observe')
  t.equal(cfg.detector.margin, 0.02)
  t.equal(cfg.detector.bucketMs, 500)
  t.equal(cfg.detector.retentionMs, 60_000)
  t.equal(cfg.breaker.probationShare, 0.25)
  writeFileSync(path.join(dir, 'mxgate.ini'), `${MINIMAL}[relay]\nconfirm_permanent = none\n`)
  t.same(loadConfig({ baseDir: dir, env: {} }).relay.confirmPermanent, [])
})
