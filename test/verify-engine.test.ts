// Recipient verification through the real engine: its Verifier asks real fake backends over loopback SMTP (MAIL,
// RCPT, RSET on pooled sessions), through the same breakers, and caches what they say.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import type { MxgateConfig } from '../src/config/schema'
import { Engine } from '../src/engine'
import type { FakeBackend, FakeBackendOptions, FaultRule } from '../src/testing/fake-backend'
import { type Rig, startRig, testConfig } from './helpers/engine'
import { rawCommand, startRedis } from './helpers/redis-server'

const NO_SUCH_USER = (rcpt: string): FaultRule => ({
  stage: 'rcpt',
  action: 'reply',
  rcpt,
  reply: '550 5.1.1 <x>: Recipient address rejected: User unknown',
})
const REFUSE_ALL: FaultRule = { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 User unknown' }
const DOWN: FaultRule = { stage: 'connect', action: 'refuse' }

async function rig(t: Test, specs: FakeBackendOptions[], tweak?: (c: MxgateConfig) => void): Promise<Rig> {
  const r = await startRig(specs, { tweak: (c) => tweak?.(c) })
  t.teardown(() => r.close())
  return r
}

/** MAIL commands each backend saw (every check and delivery opens one). */
function transactions(backends: FakeBackend[]): number[] {
  const seen = backends.map(() => 0)
  for (const [i, b] of backends.entries()) b.on('transaction', () => seen[i]!++)
  return seen
}

const verifier = (r: Rig) => {
  if (r.engine.verifier === null) throw new Error('verification is off in this rig')
  return r.engine.verifier
}

t.test('an unknown user is unknown once a second backend confirms it, then cached', async (t) => {
  const r = await rig(t, [{ faults: [NO_SUCH_USER('ghost')] }, { faults: [NO_SUCH_USER('ghost')] }])
  const seen = transactions(r.backends)
  const a = await verifier(r).check('ghost@example.com')
  t.match(a, { result: 'unknown', source: 'backend', reply: { code: 550, enhanced: '5.1.1' } })
  t.same(seen, [1, 1], 'both backends were asked')
  const again = await verifier(r).check('ghost@EXAMPLE.com')
  t.match(again, { result: 'unknown', source: 'memory' }, 'the domain is case-insensitive in the cache')
  t.same(seen, [1, 1], 'a cache hit asks nobody')
  t.equal(r.backends[0]!.received.length + r.backends[1]!.received.length, 0, 'no message was sent (no DATA)')
})

t.test('a known user is known after one backend, and a cache hit avoids a second dialogue', async (t) => {
  const r = await rig(t, [{}, {}])
  const seen = transactions(r.backends)
  t.match(await verifier(r).check('alice@example.com'), { result: 'known', source: 'backend' })
  t.equal(seen[0]! + seen[1]!, 1, 'one dialogue')
  t.match(await verifier(r).check('alice@example.com'), { result: 'known', source: 'memory' })
  t.equal(seen[0]! + seen[1]!, 1, 'still one dialogue')
  const metrics = await r.engine.metrics.registry.metrics()
  t.match(metrics, /mxgate_verify_cache_hits_total\{tier="memory"\} 1/)
  t.match(metrics, /mxgate_verify_cache_misses_total 1/)
  t.match(metrics, /mxgate_verify_duration_seconds_count\{result="known"\} 1/)
})

t.test('the session is reused: RSET after the check, then the next check or delivery on it', async (t) => {
  const r = await rig(t, [{}])
  await verifier(r).check('a@example.com')
  await verifier(r).check('b@example.com')
  const msg = {
    id: 'm1',
    envelope: { from: 's@remote.test', to: ['a@example.com'] },
    body: Buffer.from('Subject: x\r\n\r\nhi\r\n'),
    receivedAt: Date.now(),
  }
  const res = await r.engine.accept(msg)
  t.equal(res.outcome, 'relayed')
  t.equal(r.backends[0]!.counters.sessions, 1, 'two checks and a delivery on one session')
  t.same(r.backends[0]!.received[0]?.to, ['a@example.com'])
})

t.test('a backend that refuses everyone: its refusal is neither cached nor passed on, and it is charged', async (t) => {
  const r = await rig(t, [{ faults: [REFUSE_ALL] }, {}])
  const seen = transactions(r.backends)
  const a = await verifier(r).check('bob@example.com')
  t.match(a, { result: 'known', source: 'backend' }, 'the second backend took bob')
  t.same(seen, [1, 1])
  t.match(r.engine.health.status('b1').lastFault, /recipient check: b2 took bob@example\.com, which it refused/)
  t.match(await verifier(r).check('bob@example.com'), { result: 'known', source: 'memory' })
})

t.test('a refusal nobody can confirm is not an answer: on_timeout decides, nothing is cached', async (t) => {
  const r = await rig(t, [{ faults: [REFUSE_ALL] }, { faults: [DOWN] }])
  const a = await verifier(r).check('carol@example.com')
  t.match(a, { result: 'unavailable', why: /b1 refused carol@example\.com with 550 5\.1\.1 .*no second backend/ })
  const seen = transactions(r.backends)
  t.match(await verifier(r).check('carol@example.com'), { result: 'unavailable' })
  t.equal(seen[0], 1, 'asked again: nothing was cached')
})

t.test('a backend down during verification: another answers and the fault is charged to it', async (t) => {
  const r = await rig(t, [{ faults: [DOWN] }, {}])
  t.match(await verifier(r).check('dave@example.com'), { result: 'known', source: 'backend' })
  t.match(r.engine.health.status('b1').lastFault, /ECONNREFUSED|refused/)
  t.ok(r.engine.health.status('b1').window.faults >= 1, 'counted in its breaker window')
})

t.test('every backend down: unavailable, not cached', async (t) => {
  const r = await rig(t, [{ faults: [DOWN] }, { faults: [DOWN] }])
  const a = await verifier(r).check('erin@example.com')
  t.match(a, { result: 'unavailable', why: /ECONNREFUSED|refused|no backend/ })
})

t.test('a temporary failure (451 4.3.0) at RCPT is the backend’s: the next one is asked', async (t) => {
  const r = await rig(t, [{ faults: [{ stage: 'rcpt', action: 'reply', reply: '451 4.3.0 try later' }] }, {}])
  t.match(await verifier(r).check('fay@example.com'), { result: 'known', source: 'backend' })
})

t.test('another refusal of the recipient’s own (mailbox full) is left to the delivery, uncached', async (t) => {
  const full: FaultRule = { stage: 'rcpt', action: 'reply', rcpt: 'gus', reply: '552 5.2.2 Mailbox full' }
  const r = await rig(t, [{ faults: [full] }, { faults: [full] }])
  t.match(await verifier(r).check('gus@example.com'), { result: 'undecided', why: /552 5\.2\.2/ })
  t.match(await verifier(r).check('gus@example.com'), { result: 'undecided' }, 'asked again')
})

t.test('a backend in probation is never asked', async (t) => {
  const r = await rig(t, [{ faults: [REFUSE_ALL] }, {}], (c) => {
    c.breaker.slowStartMs = 600_000
    c.breaker.probationMessages = 10_000
  })
  await r.engine.health.eject('b1', 'repair', null, 'ops')
  await r.engine.health.restore('b1', 'ops')
  t.equal(r.engine.health.status('b1').state, 'probation')
  const seen = transactions(r.backends)
  for (const u of ['h1', 'h2', 'h3']) t.match(await verifier(r).check(`${u}@example.com`), { result: 'known' })
  t.same(seen, [0, 3], 'only b2 was asked')
})

t.test('a single backend’s word stands (nobody to confirm with)', async (t) => {
  const r = await rig(t, [{ faults: [NO_SUCH_USER('ivy')] }])
  t.match(await verifier(r).check('ivy@example.com'), { result: 'unknown', source: 'backend' })
})

t.test('checks of different recipients run side by side, not one after another', async (t) => {
  const stall: FaultRule = { stage: 'rcpt', action: 'stall', rcpt: 'slow' }
  const r = await rig(t, [{ faults: [stall] }], (c) => {
    c.client.timeouts.rcpt = 5000
    c.verify.timeoutMs = 10_000
  })
  const slow = verifier(r).check('slow@example.com')
  let slowDone = false
  void slow.then(() => {
    slowDone = true
  })
  t.match(await verifier(r).check('fast@example.com'), { result: 'known' })
  t.equal(slowDone, false, 'fast was answered while slow was still being checked')
  t.equal(verifier(r).pending, 1)
  const twice = [verifier(r).check('same@example.com'), verifier(r).check('same@example.com')]
  t.equal(twice[0], twice[1], 'two checks of one address share one dialogue')
  await Promise.all(twice)
})

t.test('verdicts are shared through Redis under the configured prefix, with their TTL', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = `test-${randomUUID()}:`
  const tweak = (c: MxgateConfig) => {
    c.redis.url = redis.url
    c.redis.prefix = prefix
  }
  const r = await rig(t, [{ faults: [NO_SUCH_USER('ghost')] }, { faults: [NO_SUCH_USER('ghost')] }], tweak)
  t.match(await verifier(r).check('jo@example.com'), { result: 'known', source: 'backend' })
  t.match(await verifier(r).check('ghost@example.com'), { result: 'unknown', source: 'backend' })
  const ttl = async (key: string) => Number((await rawCommand(redis.port, `PTTL ${prefix}verify:${key}`)).slice(1))
  t.ok(await eventually(async () => (await ttl('jo@example.com')) > 0), 'the positive verdict is in Redis')
  const pos = await ttl('jo@example.com')
  const neg = await ttl('ghost@example.com')
  t.ok(pos > 86_000_000 && pos <= 86_400_000, `positive TTL about a day (${pos} ms)`)
  t.ok(neg > 3_500_000 && neg <= 3_600_000, `negative TTL about an hour (${neg} ms)`)

  // A second node on the same Redis answers from it without asking a backend.
  const other = new Engine(testConfig(r.backends, tweak), { node: 'n2' })
  await other.start()
  t.teardown(() => other.close())
  await eventually(async () => (await rawCommand(redis.port, 'PING')).startsWith('+PONG'))
  const seen = transactions(r.backends)
  t.ok(
    await eventually(async () => (await other.verifier!.check('jo@example.com')).result === 'known'),
    'the other node knows jo',
  )
  t.match(await other.verifier!.check('ghost@example.com'), { result: 'unknown', source: /memory|shared/ })
  t.same(seen, [0, 0], 'no backend was asked by the second node')
})

async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await check().catch(() => false)) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}
