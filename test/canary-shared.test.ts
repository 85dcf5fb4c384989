// Canary returns shared between processes through the state store (README "Canaries"): the Redis store against a
// real redis-server (registration, return, note, the key a sender reads when its timeout fires, Redis away), the
// memory store's one-process contract, and the scheduler counting another process's return with its own round trip
// and calling a loss it cannot check "unjudged".
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import t, { type Test } from 'tap'
import type { DeliveryAttempt } from '../src/backend/outcome'
import { type CanaryPorts, CanaryScheduler } from '../src/canary/scheduler'
import { newToken } from '../src/canary/tokens'
import { MemoryStore, RedisStore } from '../src/cluster'
import type { CanaryReturnNote, StateStore } from '../src/cluster/types'
import { CANARY_JUDGE_DEFAULTS, CanaryJudge } from '../src/health/canary-judge'
import { eventually, rawCommand, startRedis } from './helpers/redis-server'

const quiet = pino({ level: 'silent' })

async function redisNode(t: Test, url: string, prefix: string, node: string): Promise<RedisStore> {
  const store = new RedisStore({ url, prefix, node, logger: quiet, pollIntervalMs: 300, flushIntervalMs: 100 })
  t.teardown(() => store.stop())
  await store.start()
  return store
}

function notes(store: StateStore): CanaryReturnNote[] {
  const seen: CanaryReturnNote[] = []
  store.on('canaryReturn', (n) => seen.push(n))
  return seen
}

t.test('Redis store: a token sent by A and returned to B is claimed, heard by A, and readable on A', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = `test-${randomUUID()}:`
  const a = await redisNode(t, redis.url, prefix, 'A')
  const b = await redisNode(t, redis.url, prefix, 'B')
  const heardA = notes(a)
  const heardB = notes(b)
  const token = newToken()
  a.canarySent(token, 10_000)
  const at = Date.now()
  // The registration is fire-and-forget: wait until Redis holds it before B looks.
  const key = a.keys.canary(token)
  await waitUntil(async () => (await rawCommand(redis.port, `GET ${key}`)).includes('\r\ns\r\n'), 'A registered it')
  t.equal(await b.canaryReturned(token, at, 10_000), 'claimed', 'B finds that a node sent it')
  await eventually(() => heardA.length === 1, 'A hears of the return')
  t.same(heardA, [{ token, at }])
  t.same(heardB, [], 'B does not hear its own note')
  t.equal(await a.canaryReturnOf(token), at, 'A can read it back when its timeout fires')
  t.equal(await b.canaryReturned(token, at + 5, 10_000), 'repeated', 'a second copy is repeated')
  t.equal(heardA.length, 1, 'and not published again')
  const ttl = Number((await rawCommand(redis.port, `PTTL ${key}`)).slice(1))
  t.ok(ttl > 0 && ttl <= 10_000, `the key expires with the canary (PTTL ${ttl})`)

  const stranger = newToken()
  t.equal(await b.canaryReturned(stranger, at, 10_000), 'unknown', 'a token no node sent is unknown')
  // Notes arrive in order: once a later, registered return is heard, a note for the stranger would have been too.
  const later = newToken()
  a.canarySent(later, 10_000)
  const laterKey = a.keys.canary(later)
  await waitUntil(async () => (await rawCommand(redis.port, `GET ${laterKey}`)).includes('\r\ns\r\n'), 'registered')
  t.equal(await b.canaryReturned(later, at, 10_000), 'claimed')
  await eventually(() => heardA.some((n) => n.token === later), 'A hears the later one')
  t.notOk(
    heardA.some((n) => n.token === stranger),
    'a made-up token is not broadcast',
  )
  t.equal(await a.canaryReturnOf(stranger), at, 'but its key is there for a sender that could not register it')
  t.equal(await a.canaryReturnOf(newToken()), null, 'a token nobody returned reads null')
})

t.test(
  'Redis store: away, a return is kept and shared when Redis is back; the sender cannot be answered',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const prefix = `test-${randomUUID()}:`
    const a = await redisNode(t, redis.url, prefix, 'A')
    const b = await redisNode(t, redis.url, prefix, 'B')
    const token = newToken()
    await redis.kill()
    await eventually(() => !a.up && !b.up, 'both see Redis gone')
    const at = Date.now()
    t.equal(await b.canaryReturned(token, at, 30_000), 'unreachable', 'B keeps it')
    t.equal(await a.canaryReturnOf(token), undefined, 'A cannot be told either way')
    await redis.restart()
    await waitUntil(
      async () => (await a.canaryReturnOf(token)) === at,
      'A reads the kept return once Redis is back',
      15_000,
    )
  },
)

t.test('memory store: this process only; sent then returned is claimed, a stranger unknown', async (t) => {
  const m = new MemoryStore({ node: 'solo' })
  await m.start()
  t.teardown(() => m.stop())
  const heard = notes(m)
  const token = newToken()
  m.canarySent(token, 1000)
  t.equal(await m.canaryReturned(token, 5, 1000), 'claimed')
  t.equal(await m.canaryReturned(token, 6, 1000), 'repeated')
  t.equal(await m.canaryReturned(newToken(), 7, 1000), 'unknown')
  t.equal(await m.canaryReturnOf(token), 5)
  t.equal(heard.length, 2, 'one note per first return')
})

/** A scheduler on a hand-driven clock whose backend takes every canary, sharing returns through `store`. */
function scheduler(t: Test, store: StateStore, clock: { now: number }, lookup?: CanaryPorts['shared']['returnOf']) {
  const sent: string[] = []
  const ok: DeliveryAttempt = {
    backendId: 'any',
    ok: true,
    accepted: ['canary@example.com'],
    refused: [],
    dotReply: null,
    failure: null,
    elapsedMs: 1,
    reusedSession: false,
  }
  const s = new CanaryScheduler(
    { address: 'canary@example.com', intervalMs: 1000, timeoutMs: 5000, sendDeadlineMs: 1000, hostname: 'mx.test' },
    new CanaryJudge({ ...CANARY_JUDGE_DEFAULTS, roundMs: 1000 }),
    {
      backends: () => [
        { id: 'mx1', inRotation: true },
        { id: 'mx2', inRotation: true },
      ],
      send: async (_id, _env, body) => {
        sent.push(/mxc-[0-9a-f]{24}/.exec(body.toString('latin1'))![0])
        return ok
      },
      eject: () => ({ ejected: false, why: 'test' }),
      returned: () => {},
      shared: {
        sent: (token, ttl) => store.canarySent(token, ttl),
        returned: (token, at, ttl) => store.canaryReturned(token, at, ttl),
        returnOf: lookup ?? ((token) => store.canaryReturnOf(token)),
      },
      log: quiet,
      now: () => clock.now,
    },
  )
  store.on('canaryReturn', (n) => s.returnedElsewhere(n.token, n.at))
  t.teardown(() => s.stop())
  return { s, sent }
}

t.test(
  'scheduler: another process returns its canary; round trip from its own 250; loss only when nobody did',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const prefix = `test-${randomUUID()}:`
    const a = await redisNode(t, redis.url, prefix, 'A')
    const b = await redisNode(t, redis.url, prefix, 'B')
    const clockA = { now: 1_000_000 }
    const clockB = { now: 1_000_000 }
    const { s: sa, sent } = scheduler(t, a, clockA)
    const { s: sb } = scheduler(t, b, clockB)
    sa.tick()
    await waitUntil(
      async () => sent.length === 2 && sa.view('mx1').sent === 1 && sa.view('mx2').sent === 1,
      'A sent two',
    )
    const [t1, t2] = sent as [string, string]
    clockA.now += 300
    clockB.now = clockA.now
    t.match(sb.returned(t1), { kind: 'unknown' }, "B answers for A's token as not pending here")
    await waitUntil(async () => sa.view('mx1').returned === 1, 'A counts the return B got')
    t.equal(sa.view('mx1').lastRoundTripMs, 300, "A's round trip runs from its own 250 to B's receipt")
    t.equal(sb.view('mx1').returned, 0, 'B counts nothing for it')
    // t2 never comes back anywhere: lost on A at its timeout.
    clockA.now += 6000
    sa.tick()
    await waitUntil(async () => sa.view('mx2').lost === 1, 'the other canary is lost on A')
    t.equal(sa.view('mx1').lost, 0)
    t.ok(t2)
  },
)

t.test('scheduler: a canary past its timeout while the store cannot answer is unjudged, not lost', async (t) => {
  const m = new MemoryStore({ node: 'solo' })
  await m.start()
  t.teardown(() => m.stop())
  const clock = { now: 5_000_000 }
  const { s, sent } = scheduler(t, m, clock, async () => undefined)
  s.tick()
  await waitUntil(async () => sent.length === 2 && s.view('mx1').sent === 1, 'sent')
  clock.now += 7000
  s.tick()
  await waitUntil(async () => s.view('mx1').unjudged === 1 && s.view('mx2').unjudged === 1, 'both unjudged')
  t.equal(s.view('mx1').lost + s.view('mx2').lost, 0, 'no loss')
})

t.test('scheduler: a token no process sent is counted unknown; a late copy of its own too', async (t) => {
  const m = new MemoryStore({ node: 'solo' })
  await m.start()
  t.teardown(() => m.stop())
  const clock = { now: 9_000_000 }
  const { s, sent } = scheduler(t, m, clock)
  const unknown: string[] = []
  s.on('unknown', (tok) => unknown.push(tok))
  const stranger = 'mxc-0123456789abcdef01234567'
  t.match(s.returned(stranger), { kind: 'unknown' })
  await waitUntil(async () => unknown.length === 1, 'the stranger is counted unknown')
  s.tick()
  await waitUntil(async () => sent.length === 2 && s.view('mx1').sent === 1, 'sent')
  t.match(s.returned(sent[0]!), { kind: 'returned', backendId: 'mx1' })
  t.match(s.returned(sent[0]!), { kind: 'unknown' }, 'a second copy')
  t.same(unknown, [stranger, sent[0]], 'counted unknown too')
})

async function waitUntil(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!(await check().catch(() => false))) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
