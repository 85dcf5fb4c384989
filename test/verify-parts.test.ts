// The pure parts of recipient verification: the verdict cache, the harvest guard, which route a recipient takes,
// pipelined RCPTs read from Haraka's buffer, and the [verify] settings with their error texts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config/load'
import { cacheKey, type SharedVerdicts, type StoredVerdict, VerdictCache } from '../src/verify/cache'
import { HarvestGuard } from '../src/verify/harvest'
import { pipelinedRecipients } from '../src/verify/pipelined'
import { RecipientRoutes } from '../src/verify/policy'
import { RecipientCheck } from '../src/verify/recipient-check'
import { parseStored } from '../src/verify/redis-verdicts'
import { type Answer, unknownAddress, type Verifier } from '../src/verify/verifier'

const NO_USER = { code: 550, enhanced: '5.1.1', lines: ['User unknown'] }

t.test('verdict cache: TTLs by verdict, least recently used dropped first, shared tier behind memory', async (t) => {
  let now = 1_000
  const shared = new Map<string, StoredVerdict>()
  const store: SharedVerdicts = {
    get: async (k) => shared.get(k) ?? null,
    set: (k, v) => shared.set(k, v),
  }
  const c = new VerdictCache({ size: 2, positiveTtlMs: 100, negativeTtlMs: 10 }, store, () => now)
  c.put('a@x', { known: true })
  c.put('b@x', { known: false, reply: NO_USER })
  t.same(shared.get('a@x')?.expiresAt, 1_100, 'positive: positive_ttl')
  t.same(shared.get('b@x')?.expiresAt, 1_010, 'negative: negative_ttl')
  t.match(await c.get('a@x'), { verdict: { known: true }, tier: 'memory' })
  c.put('c@x', { known: true }) // b@x is now the least recently used
  t.equal(c.entries, 2, 'bounded')
  t.match(await c.get('b@x'), { tier: 'shared' }, 'dropped from memory, still in the shared tier')
  now = 1_011
  t.equal(await c.get('b@x'), null, 'an expired negative verdict is gone')
  t.match(await c.get('a@x'), { verdict: { known: true } }, 'the positive one lives on')
  t.equal(cacheKey('Bob@Example.COM'), 'Bob@example.com', 'the local part keeps its case, the domain does not')
})

t.test('stored verdicts from Redis are checked before use', async (t) => {
  t.same(parseStored('{"verdict":{"known":true},"expiresAt":5}'), { verdict: { known: true }, expiresAt: 5 })
  t.equal(parseStored('{"verdict":{"known":false},"expiresAt":5}'), null, 'a negative one needs its reply')
  t.equal(parseStored('not json'), null)
  t.equal(parseStored('{"known":true}'), null)
})

t.test('harvest guard: past the limit within the window the client is cut off until the window ends', async (t) => {
  let now = 0
  const g = new HarvestGuard({ limit: 2, windowMs: 1000, maxClients: 2 }, () => now)
  t.equal(g.refused('1.1.1.1'), false)
  t.equal(g.refused('1.1.1.1'), false)
  t.equal(g.blocked('1.1.1.1'), false, 'at the limit, not over it')
  t.equal(g.refused('1.1.1.1'), true, 'the third is over')
  t.equal(g.blocked('1.1.1.1'), true)
  t.equal(g.blocked('2.2.2.2'), false, 'per client address')
  now = 1000
  t.equal(g.blocked('1.1.1.1'), false, 'a new window')
  g.refused('a')
  g.refused('b')
  g.refused('c')
  t.equal(g.refused('a'), false, 'the oldest address was forgotten (bounded memory)')
  const off = new HarvestGuard({ limit: 0, windowMs: 1000 })
  for (let i = 0; i < 5; i++) off.refused('x')
  t.equal(off.blocked('x'), false, 'limit 0: no limit')
})

t.test('routes: opt-out domains, static lists, postmaster, the backends for the rest', async (t) => {
  const r = new RecipientRoutes({ skipDomains: ['skip.test'], staticRecipients: ['ann@list.test'] })
  t.equal(r.route('anyone', 'skip.test'), 'skip')
  t.equal(r.route('ANN', 'List.Test'), 'static-known')
  t.equal(r.route('bob', 'list.test'), 'static-unknown')
  t.equal(r.route('bob', 'example.com'), 'backends')
  t.equal(r.route('PostMaster', 'example.com'), 'skip', 'postmaster is never checked (RFC 5321 4.5.1)')
  t.equal(r.route('postmaster', ''), 'skip', 'bare <postmaster>')
})

t.test('pipelined RCPTs are read from the bytes behind the current command', async (t) => {
  const buf = Buffer.from(
    'RCPT TO:<a@example.com>\r\nrcpt to: <b@example.com> NOTIFY=NEVER\r\nRCPT TO:<@relay:c@example.com>\r\n' +
      'RCPT TO:<"q"@example.com>\r\nDATA\r\nRCPT TO:<partial@exa',
  )
  t.same(
    pipelinedRecipients(buf),
    ['a@example.com', 'b@example.com'],
    'source routes, quotes and partial lines skipped',
  )
  t.same(pipelinedRecipients(null), [])
})

t.test('only a permanent X.1.x refusal is "no such address"', async (t) => {
  t.equal(unknownAddress(NO_USER), true)
  t.equal(unknownAddress({ code: 550, enhanced: '5.7.1', lines: [] }), false)
  t.equal(unknownAddress({ code: 450, enhanced: '4.1.1', lines: [] }), false)
  t.equal(unknownAddress({ code: 550, enhanced: null, lines: [] }), false)
})

function dirWith(t: Test, ini: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-cfg-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const MINIMAL = '[smtp]\ndomains = example.com, example.org\n[backend.mx1]\naddress = 127.0.0.1:2601\n'

function loadError(t: Test, ini: string): string {
  try {
    loadConfig({ baseDir: dirWith(t, ini), env: {} })
  } catch (err) {
    if (err instanceof ConfigError) return err.message.replace(/^.*mxgate\.ini/, 'mxgate.ini')
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('[verify] settings: defaults, parsing, and errors naming the key and the fix', async (t) => {
  const d = loadConfig({ baseDir: dirWith(t, MINIMAL), env: {} }).verify
  t.match(d, {
    enabled: true,
    sender: 'double-bounce@example.com',
    positiveTtlMs: 86_400_000,
    negativeTtlMs: 3_600_000,
    onTimeout: 'accept',
    harvestLimit: 20,
  })
  const ini = `${MINIMAL}[verify]\nenabled = no\nsender = probe@example.org\npositive_ttl = 2h\nnegative_ttl = 5m\ncache_size = 10\ntimeout = 2s\non_timeout = defer\nharvest_limit = 0\nharvest_window = 1m\nskip_domains = example.org\nstatic_recipients = Ann@Example.com\n`
  t.match(loadConfig({ baseDir: dirWith(t, ini), env: {} }).verify, {
    enabled: false,
    sender: 'probe@example.org',
    positiveTtlMs: 7_200_000,
    negativeTtlMs: 300_000,
    cacheSize: 10,
    timeoutMs: 2000,
    onTimeout: 'defer',
    harvestLimit: 0,
    harvestWindowMs: 60_000,
    skipDomains: ['example.org'],
    staticRecipients: ['ann@example.com'],
  })
  t.equal(loadConfig({ baseDir: dirWith(t, MINIMAL), env: { MXGATE_VERIFY: 'off' } }).verify.enabled, false)
  t.equal(
    loadError(t, `${MINIMAL}[verify]\non_timeout = bounce\n`),
    'mxgate.ini:6: verify.on_timeout: "bounce" must be accept or defer',
  )
  t.match(
    loadError(t, `${MINIMAL}[verify]\nsender = <>\n`),
    /verify\.sender: "<>" is not a plain address; write e\.g\./,
  )
  t.match(
    loadError(t, `${MINIMAL}[verify]\nskip_domains = other.test\n`),
    /verify\.skip_domains: "other\.test" is not one of smtp\.domains/,
  )
  t.match(
    loadError(t, `${MINIMAL}[verify]\nstatic_recipients = a@other.test\n`),
    /verify\.static_recipients: "a@other\.test": other\.test is not one of smtp\.domains/,
  )
  t.match(
    loadError(t, `${MINIMAL}[verify]\nskip_domains = example.org\nstatic_recipients = a@example.org\n`),
    /a domain is either skipped or listed, not both/,
  )
  t.match(loadError(t, `${MINIMAL}[verify]\npositive_ttl = forever\n`), /is not a duration; write e\.g\./)
  t.match(loadError(t, `${MINIMAL}[verify]\ncache = 5\n`), /unknown key; \[verify\] knows: enabled, sender/)
})

t.test('the RCPT decision: answers mapped, pipelined checks bounded, harvesters cut off', async (t) => {
  const asked: string[] = []
  const answers: Record<string, Answer> = {
    'known@example.com': { result: 'known', source: 'memory' },
    'ghost@example.com': { result: 'unknown', source: 'backend', reply: NO_USER },
    'slow@example.com': { result: 'unavailable', why: 'no backend is available' },
    'full@example.com': { result: 'undecided', why: 'mx1 refused full@example.com: 552 5.2.2 Mailbox full' },
  }
  const verifier = {
    check: async (a: string) => {
      asked.push(a)
      return answers[a] ?? { result: 'known', source: 'backend' }
    },
  } as unknown as Verifier
  const routes = new RecipientRoutes({ skipDomains: [], staticRecipients: [] })
  const make = (onTimeout: 'accept' | 'defer', limit = 2) =>
    new RecipientCheck(routes, verifier, new HarvestGuard({ limit, windowMs: 60_000 }), {
      onTimeout,
      harvestWindowMs: 60_000,
    })
  const rcpt = (address: string) => {
    const [user = '', host = ''] = address.split('@')
    return { user, host, address }
  }
  const c = make('accept')
  t.match(await c.decide('1.1.1.1', rcpt('known@example.com')), { action: 'accept', result: 'known', source: 'memory' })
  t.match(await c.decide('1.1.1.1', rcpt('full@example.com')), { action: 'accept', result: 'undecided' })
  t.match(await c.decide('1.1.1.1', rcpt('slow@example.com')), { action: 'accept', result: 'unavailable' })
  t.match(await make('defer').decide('1.1.1.1', rcpt('slow@example.com')), {
    action: 'defer',
    reply: { code: 450, enhanced: '4.4.3' },
  })
  t.match(await c.decide('1.1.1.1', rcpt('ghost@example.com')), { action: 'refuse', reply: NO_USER })
  t.match(await c.decide('1.1.1.1', rcpt('ghost@example.com')), { action: 'refuse' })
  t.match(await c.decide('1.1.1.1', rcpt('ghost@example.com')), {
    action: 'cutoff',
    reply: { code: 421, enhanced: '4.7.0' },
  })
  asked.length = 0
  t.match(await c.decide('1.1.1.1', rcpt('known@example.com')), { action: 'cutoff' }, 'cut off before any lookup')
  t.same(asked, [])

  const many = Array.from({ length: 30 }, (_, i) => `u${i}@example.com`)
  const ours = (d: string) => d === 'example.com'
  make('accept').prefetch('2.2.2.2', [...many, 'x@other.test', 'a%b@example.com'], ours)
  t.equal(asked.length, 20, 'at most 20 pipelined checks ahead')
  asked.length = 0
  make('accept').prefetch('2.2.2.2', ['x@other.test', 'a%b@example.com', 'ok@example.com'], ours)
  t.same(asked, ['ok@example.com'], 'foreign domains and routing forms are never checked')
  asked.length = 0
  c.prefetch('1.1.1.1', many, ours)
  t.same(asked, [], 'nothing ahead for a client already cut off')
})
