// A store that finds its Redis through Sentinel: shares state, and follows a failover to the promoted replica.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pino from 'pino'
import t from 'tap'
import { RedisStore } from '../src/cluster/redis-store'
import type { ManualOverride } from '../src/cluster/types'
import { eventually, rawCommand, startRedis, startSentinel } from './helpers/redis-server'

const quiet = pino({ level: 'silent' })

const override = (by: string): ManualOverride => ({
  state: 'draining',
  by,
  reason: 'maintenance',
  at: Date.now(),
  until: null,
})

t.test('nodes behind Sentinel share overrides and survive a master failover', async (t) => {
  const master = await startRedis()
  t.teardown(() => master.stop())
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
  t.teardown(() => replica.stop())
  const sentinel = await startSentinel(master.port, { downAfterMs: 500 })
  t.teardown(() => sentinel.stop())
  t.match(sentinel.url, /^redis-sentinel:\/\/127\.0\.0\.1:\d+\/mxgate-test$/)

  const prefix = `test-${randomUUID()}:`
  const stores = ['A', 'B'].map(
    (node) => new RedisStore({ url: sentinel.url, prefix, node, logger: quiet, pollIntervalMs: 300 }),
  )
  const [a, b] = stores as [RedisStore, RedisStore]
  for (const s of stores) t.teardown(() => s.stop())
  // start() returns on the first ready, the first close or its own 3 s timeout: asking Sentinel for the master and
  // then connecting to it may take longer than that on a loaded machine. Wait for the link.
  await Promise.all(stores.map((s) => s.start()))
  await eventually(() => a.up && b.up, 'both nodes connect to the master Sentinel names', 10_000)
  t.ok(a.up && b.up, 'both nodes reach the master Sentinel names')

  await a.setOverride('mx1', override('A'))
  await eventually(() => b.overrides().has('mx1'), 'B sees the override from A', 5000)

  // Make sure the replica has it before the master dies (replication is asynchronous).
  const onMaster = new Redis({ port: master.port, host: '127.0.0.1' })
  t.teardown(() => onMaster.disconnect())
  t.equal(await onMaster.wait(1, 5000), 1, 'the replica acknowledged the write')
  onMaster.disconnect()

  await master.kill()
  await eventually(() => !a.up, 'A notices the master is gone')
  await eventually(
    () => a.up && b.up,
    'both nodes reconnect to the promoted replica (via Sentinel, after a ~0.5 s down-after and an election)',
    30_000,
  )
  const role = await rawCommand(replica.port, 'ROLE')
  t.match(role, /master/, 'the replica is the master now')
  t.equal(a.overrides().get('mx1')?.by, 'A', 'the override survived the failover')

  await b.setOverride('mx2', override('B'))
  await eventually(() => a.overrides().has('mx2'), 'a write after the failover reaches A', 5000)
})
