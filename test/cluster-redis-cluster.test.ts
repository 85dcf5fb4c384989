// A store on Redis Cluster: every key shares one hash tag, so scripts, MULTI and pipelines stay in one slot.
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import t from 'tap'
import { RedisStore } from '../src/cluster/redis-store'
import { eventually, startRedisCluster } from './helpers/redis-server'

const quiet = pino({ level: 'silent' })

t.test('nodes on a three-master Redis Cluster share overrides, ejections and outcomes', async (t) => {
  const cluster = await startRedisCluster(3)
  t.teardown(() => cluster.stop())
  const prefix = `test-${randomUUID()}:`
  const stores = ['A', 'B'].map(
    (node) =>
      new RedisStore({ url: cluster.url, prefix, node, logger: quiet, pollIntervalMs: 200, flushIntervalMs: 100 }),
  )
  const [a, b] = stores as [RedisStore, RedisStore]
  for (const s of stores) t.teardown(() => s.stop())
  // start() returns on the first ready, the first close or its own timeout, whichever comes first: a cluster client
  // may still be discovering slots (or retrying a node that was not ok yet) when it returns. Wait for the link.
  await Promise.all(stores.map((s) => s.start()))
  await eventually(() => a.up && b.up, 'both stores are connected to the cluster', 10_000)
  t.ok(a.up && b.up)
  t.equal(a.keys.values.override, `{${prefix.slice(0, -1)}}:overrides`, 'the prefix became a hash tag')

  await a.setOverride('mx1', { state: 'ejected', by: 'ops', reason: 'x', at: Date.now(), until: null })
  await a.setEjection('mx2', { reason: 'y', at: Date.now(), until: Date.now() + 60_000, count: 1, node: 'A' })
  a.recordOutcomes('mx1', 4, 1)
  b.recordOutcomes('mx1', 6, 1)
  await eventually(() => b.overrides().has('mx1') && b.ejections().has('mx2'), 'B sees the override and ejection')
  await eventually(() => a.pooledOutcomes('mx1', 60_000).ok === 10, 'A sums outcomes from both nodes')
  t.same(a.pooledOutcomes('mx1', 60_000), { ok: 10, fail: 2, refused: 0 })
  t.equal(a.pendingWrites, 0, 'no write failed with CROSSSLOT')
})
