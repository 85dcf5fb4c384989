// Redis going away and coming back: nodes go on alone, say so once, and converge when it returns.
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import pino from 'pino'
import t, { type Test } from 'tap'
import { RedisStore, type RedisStoreOptions } from '../src/cluster/redis-store'
import type { ManualOverride, ResyncEvent } from '../src/cluster/types'
import { eventually, freePort, type RedisProcess, startProxy, startRedis } from './helpers/redis-server'

interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

/** A pino logger whose JSON lines land in an array, so tests can assert on what was logged. */
function captureLog(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine)
      done()
    },
  })
  return { logger: pino({ level: 'info' }, sink), lines }
}

const quiet = pino({ level: 'silent' })

const override = (by: string, at = Date.now()): ManualOverride => ({
  state: 'ejected',
  by,
  reason: `${by} says so`,
  at,
  until: null,
})

async function nodeOn(t: Test, url: string, prefix: string, node: string, opts: Partial<RedisStoreOptions> = {}) {
  const store = new RedisStore({ url, prefix, node, logger: quiet, pollIntervalMs: 300, flushIntervalMs: 100, ...opts })
  t.teardown(() => store.stop())
  await store.start()
  return store
}

/** Resolves with the promise's value, or rejects if it takes longer than `ms`: "it does not hang", loosely. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

t.test('Redis killed: nodes go on alone; Redis back: pending writes land and nodes converge', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = `test-${randomUUID()}:`
  const log = captureLog()
  const a = await nodeOn(t, redis.url, prefix, 'A', { logger: log.logger })
  const b = await nodeOn(t, redis.url, prefix, 'B')
  const events: string[] = []
  a.on('down', () => events.push('down'))
  a.on('up', () => events.push('up'))
  const resyncs: ResyncEvent[] = []
  a.on('resync', (r) => resyncs.push(r))
  a.recordOutcomes('mx1', 3, 1)
  b.recordOutcomes('mx1', 5, 0)

  await redis.kill()
  await eventually(() => !a.up && !b.up, 'both nodes notice Redis is gone')
  // Let several reconnect attempts fail: 'down' must still have been said once.
  const errorsAtDown = a.linkErrors
  await eventually(() => a.linkErrors >= errorsAtDown + 3, 'three more reconnect attempts fail', 10_000)
  t.same(events, ['down'])

  const o = override('operator-on-A')
  await within(5000, a.setOverride('mx1', o), 'setOverride while Redis is down')
  t.same(a.overrides().get('mx1'), o, 'A acts on its own override at once')
  t.equal(a.pendingWrites, 1, 'and remembers to write it')
  a.recordOutcomes('mx1', 10, 10)
  t.same(a.pooledOutcomes('mx1', 60_000).fail >= 11, true, 'A still counts its own outcomes')
  t.equal(b.overrides().has('mx1'), false, 'B cannot know yet')

  await redis.restart() // same port, empty: no persistence
  await eventually(() => a.up && b.up, 'both nodes reconnect', 10_000)
  await eventually(() => b.overrides().has('mx1'), 'B converges on the override made while apart', 10_000)
  t.same(b.overrides().get('mx1'), o)
  t.equal(a.pendingWrites, 0)
  t.same(events, ['down', 'up'])
  await eventually(() => resyncs.some((r) => r.replayed === 1), 'the resync after reconnect replays the write')
  await eventually(
    () => b.pooledOutcomes('mx1', 60_000).fail === 11,
    "A's counts from while Redis was down reach B",
    10_000,
  )

  const warns = log.lines.filter((l) => l.level === 40)
  t.equal(warns.length, 1, 'the outage is logged once')
  t.match(warns[0]?.msg, /Redis unreachable/)
  t.equal(log.lines.filter((l) => /^Redis is back/.test(l.msg)).length, 1, 'and the recovery once')
})

t.test('a node that starts while Redis is down starts alone and joins when Redis appears', async (t) => {
  const port = await freePort()
  const prefix = `test-${randomUUID()}:`
  const a = new RedisStore({ url: `redis://127.0.0.1:${port}`, prefix, node: 'A', logger: quiet, pollIntervalMs: 300 })
  t.teardown(() => a.stop())
  let downs = 0
  a.on('down', () => downs++)
  await within(10_000, a.start(), 'start() with Redis down')
  t.equal(a.up, false)
  t.equal(downs, 1)
  await a.setEjection('mx4', { reason: 'refuses', at: Date.now(), until: Date.now() + 60_000, count: 1, node: 'A' })

  const redis = await startRedis({ port })
  t.teardown(() => redis.stop())
  await eventually(() => a.up, 'A connects once Redis is there', 10_000)
  const b = await nodeOn(t, redis.url, prefix, 'B')
  await eventually(() => b.ejections().has('mx4'), 'B loads the ejection A made before Redis existed', 10_000)
})

t.test('writes made on both sides of a partition: the later one (by at) wins everywhere', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await startProxy(redis.port)
  t.teardown(() => proxy.stop())

  async function partitioned(t: Test) {
    const prefix = `test-${randomUUID()}:`
    const a = await nodeOn(t, proxy.url, prefix, 'A') // A reaches Redis through the proxy
    const b = await nodeOn(t, redis.url, prefix, 'B')
    await proxy.cut()
    await eventually(() => !a.up, 'A is cut off')
    return { a, b }
  }

  t.test('B wrote later: A drops its older write and takes B', async (t) => {
    const { a, b } = await partitioned(t)
    const now = Date.now()
    await a.setOverride('mx1', override('A', now - 1000))
    await b.setOverride('mx1', override('B', now))
    let superseded = 0
    a.on('resync', (r) => {
      superseded += r.superseded
    })
    await proxy.heal()
    await eventually(() => a.overrides().get('mx1')?.by === 'B', 'A takes the newer override from B', 10_000)
    await eventually(() => superseded === 1, "A's resync reports its write as superseded")
    t.equal(b.overrides().get('mx1')?.by, 'B')
  })

  t.test('A wrote later: its write lands and B takes it', async (t) => {
    const { a, b } = await partitioned(t)
    const now = Date.now()
    await b.setOverride('mx1', override('B', now - 1000))
    await a.setOverride('mx1', override('A', now))
    await proxy.heal()
    await eventually(() => b.overrides().get('mx1')?.by === 'A', 'B takes the newer override from A', 10_000)
    t.equal(a.overrides().get('mx1')?.by, 'A')
  })

  t.test('a restore made later than the other side’s override wins too', async (t) => {
    const { a, b } = await partitioned(t)
    await b.setOverride('mx1', override('B', Date.now() - 1000))
    await a.setOverride('mx1', null)
    await proxy.heal()
    await eventually(() => !b.overrides().has('mx1'), 'B sees the restore', 10_000)
    t.equal(a.overrides().has('mx1'), false)
  })
})

t.test('with appendonly persistence, overrides survive a Redis crash and restart', async (t) => {
  const redis: RedisProcess = await startRedis({ persist: true })
  t.teardown(() => redis.stop())
  const prefix = `test-${randomUUID()}:`
  const a = await nodeOn(t, redis.url, prefix, 'A')
  await a.setOverride('mx7', override('A'))
  await a.stop()
  await redis.kill()
  await redis.restart()
  const b = await nodeOn(t, redis.url, prefix, 'B')
  t.equal(b.overrides().get('mx7')?.by, 'A')
})
