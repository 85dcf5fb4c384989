// Two (or three) RedisStore instances as mxgate nodes on one real redis-server.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pino from 'pino'
import t, { type Test } from 'tap'
import { InvalidStateError } from '../src/cluster/errors'
import { RedisStore, type RedisStoreOptions } from '../src/cluster/redis-store'
import type { AutoEjection, ChangeEvent, ManualOverride } from '../src/cluster/types'
import { eventually, type RedisProcess, startRedis } from './helpers/redis-server'

const quiet = pino({ level: 'silent' })

const override = (over: Partial<ManualOverride> = {}): ManualOverride => ({
  state: 'ejected',
  by: 'alice',
  reason: 'answers EHLO, loses 3% of mail',
  at: Date.now(),
  until: null,
  ...over,
})

async function nodeOn(
  t: Test,
  redis: RedisProcess,
  prefix: string,
  node: string,
  opts: Partial<RedisStoreOptions> = {},
): Promise<RedisStore> {
  // start() goes on alone after startTimeoutMs without Redis's answer; these tests mean "once it has read Redis",
  // so give a loaded machine room (it returns as soon as the first resync is done).
  const store = new RedisStore({ url: redis.url, prefix, node, logger: quiet, startTimeoutMs: 10_000, ...opts })
  t.teardown(() => store.stop())
  await store.start()
  return store
}

function raw(t: Test, redis: RedisProcess): Redis {
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  return client
}

t.test('Redis-backed nodes share state', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())

  t.test('an override set on A reaches B by pub/sub, and survives both nodes restarting', async (t) => {
    const prefix = `test-${randomUUID()}:`
    // The poll is slowed to a minute here, so only the pub/sub note can bring the override to B in time.
    const slow = { pollIntervalMs: 60_000 }
    const a = await nodeOn(t, redis, prefix, 'A', slow)
    const b = await nodeOn(t, redis, prefix, 'B', slow)
    t.equal(a.up && b.up, true)
    const changes: ChangeEvent[] = []
    b.on('change', (c) => changes.push(c))

    const o = override()
    await a.setOverride('mx3', o)
    await eventually(() => b.overrides().has('mx3'), 'B sees the override', 5000)
    t.same(b.overrides().get('mx3'), o)
    t.same(changes, [{ kind: 'override', id: 'mx3', source: 'remote' }])

    await a.stop()
    await b.stop()
    const c = await nodeOn(t, redis, prefix, 'C', slow)
    t.same(c.overrides().get('mx3'), o, 'a node started later reads it on start')
  })

  t.test('a restore on one node propagates to the others', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const a = await nodeOn(t, redis, prefix, 'A', { pollIntervalMs: 60_000 })
    const b = await nodeOn(t, redis, prefix, 'B', { pollIntervalMs: 60_000 })
    await a.setOverride('mx1', override({ state: 'draining' }))
    await eventually(() => b.overrides().get('mx1')?.state === 'draining', 'B sees the drain', 5000)
    await b.setOverride('mx1', null)
    await eventually(() => !a.overrides().has('mx1'), 'A sees the restore', 5000)
    const c = await nodeOn(t, redis, prefix, 'C')
    t.equal(c.overrides().size, 0, 'and it stays restored for new nodes')
  })

  t.test('a change that never came as a note is picked up by the poll', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const a = await nodeOn(t, redis, prefix, 'A', { pollIntervalMs: 200 })
    // An operator (or a node whose note was lost) wrote the hash directly.
    const o = override({ by: 'redis-cli' })
    await raw(t, redis).hset(`${prefix}overrides`, 'mx9', JSON.stringify(o))
    await eventually(() => a.overrides().has('mx9'), 'A polls the override in', 5000)
    t.same(a.overrides().get('mx9'), o)
  })

  t.test('outcomes recorded on A and B are summed on either', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const fast = { flushIntervalMs: 100, pollIntervalMs: 100 }
    const a = await nodeOn(t, redis, prefix, 'A', fast)
    const b = await nodeOn(t, redis, prefix, 'B', fast)
    const now = Date.now()
    for (let i = 0; i < 10; i++) a.recordOutcomes('mx1', 10, 1)
    b.recordOutcomes('mx1', 50, 2)
    b.recordOutcomes('mx2', 7, 0, Date.now(), 3)
    b.recordOutcomes('mx1', 1000, 500, now - 5 * 60_000) // five minutes ago
    t.same(a.pooledOutcomes('mx1', 60_000), { ok: 100, fail: 10, refused: 0 }, "A's own counts show at once")
    const sumIs = (s: RedisStore, id: string, windowMs: number, ok: number, fail: number) => () => {
      const p = s.pooledOutcomes(id, windowMs)
      return p.ok === ok && p.fail === fail
    }
    await eventually(sumIs(a, 'mx1', 60_000, 150, 12), 'A sums both nodes over a minute')
    await eventually(sumIs(b, 'mx1', 60_000, 150, 12), 'B sums both nodes over a minute')
    await eventually(sumIs(a, 'mx2', 60_000, 7, 0), 'A sees mx2 from B')
    t.equal(a.pooledOutcomes('mx2', 60_000).refused, 3, "A sees B's permanent refusals of mx2")
    await eventually(sumIs(a, 'mx1', 10 * 60_000, 1150, 512), 'A sums ten minutes, older buckets included')
    t.same(b.pooledOutcomes('mx1', 10 * 60_000), { ok: 1150, fail: 512, refused: 0 })

    const r = raw(t, redis)
    const keys = await r.keys(`${prefix}outcomes:*`)
    t.equal(keys.length, 2, 'one hash per bucket, all backends and nodes inside')
    for (const key of keys) {
      const ttl = await r.pttl(key)
      t.ok(ttl > 0 && ttl <= 11 * 60_000, `${key} expires by itself`)
    }
  })

  t.test('ejections reach other nodes and vanish when their time is up', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const a = await nodeOn(t, redis, prefix, 'A', { pollIntervalMs: 60_000 })
    const b = await nodeOn(t, redis, prefix, 'B', { pollIntervalMs: 60_000 })
    // Long enough that B sees it before it lapses even when the note is slow (a loaded machine).
    const e: AutoEjection = { reason: 'breaker open', at: Date.now(), until: Date.now() + 2000, count: 2, node: 'A' }
    await a.setEjection('mx2', e)
    await eventually(() => b.ejections().has('mx2'), 'B sees the ejection', 2000)
    t.same(b.ejections().get('mx2'), e)
    await eventually(() => !a.ejections().has('mx2') && !b.ejections().has('mx2'), 'the ejection lapses', 10_000)
    const c = await nodeOn(t, redis, prefix, 'C')
    t.equal(c.ejections().size, 0, 'a new node does not load a lapsed ejection')
    t.same(await raw(t, redis).hgetall(`${prefix}ejections`), {}, 'and the resync pruned it from Redis')
  })

  t.test('the same value written twice is one change; malformed values are refused', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const a = await nodeOn(t, redis, prefix, 'A')
    await t.rejects(a.setOverride('mx1', override({ at: Number.NaN })), InvalidStateError)
    const o = override()
    let changes = 0
    a.on('change', () => changes++)
    await a.setOverride('mx1', o)
    await a.setOverride('mx1', { ...o })
    t.equal(changes, 1)
    t.equal(a.pendingWrites, 0, 'Redis confirmed both writes')
  })

  t.test('a malformed value in Redis is skipped, not loaded', async (t) => {
    const prefix = `test-${randomUUID()}:`
    const r = raw(t, redis)
    await r.hset(`${prefix}overrides`, 'mx1', '{"state":"on fire"}', 'mx2', JSON.stringify(override()))
    const a = await nodeOn(t, redis, prefix, 'A')
    t.same([...a.overrides().keys()], ['mx2'])
  })
})
