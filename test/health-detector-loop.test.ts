// The detector loop feeds each count once: late counts in a recent bucket, and buckets missed by a late timer.
import pino from 'pino'
import t from 'tap'
import { MemoryStore } from '../src/cluster'
import { DEFAULTS } from '../src/config/schema'
import { DETECTOR_DEFAULTS } from '../src/health/detector'
import { DetectorLoop } from '../src/health/detector-loop'
import { HealthRegistry } from '../src/health/registry'

t.test('every count reaches the detector once, however the rounds fall', async (t) => {
  const timing = { bucketMs: 1000, retentionMs: 60_000 }
  const store = new MemoryStore({ node: 'n1', timing })
  const health = new HealthRegistry(
    [
      { id: 'a', host: '127.0.0.1', port: 1, weight: 100 },
      { id: 'b', host: '127.0.0.1', port: 2, weight: 100 },
    ],
    DEFAULTS.breaker,
    { probe: async () => null, store, log: pino({ level: 'silent' }) },
  )
  const loop = new DetectorLoop(DETECTOR_DEFAULTS, timing, store, health, pino({ level: 'silent' }))
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  const seen = { ok: 0, fail: 0 }
  // Spy on what the detector is fed.
  const step = loop.detector.step.bind(loop.detector)
  loop.detector.step = (now, inc, window, views) => {
    const a = inc.get('a')
    if (a) {
      seen.ok += a.ok
      seen.fail += a.fail
    }
    return step(now, inc, window, views)
  }
  const t0 = 1_000_000_000_000
  store.recordOutcomes('a', 10, 1, t0 + 100)
  loop.round(t0 + 500)
  store.recordOutcomes('a', 5, 0, t0 + 200) // late, into a bucket already read
  store.recordOutcomes('a', 7, 2, t0 + 1500)
  loop.round(t0 + 1600)
  // A late timer: eight buckets pass before the next round.
  for (let i = 2; i < 10; i++) store.recordOutcomes('a', 1, 0, t0 + i * 1000 + 10)
  loop.round(t0 + 9900)
  loop.round(t0 + 9950) // nothing new
  t.same(seen, { ok: 30, fail: 3 })
})

t.test('the end of a freeze says whether the budget is free or only no alarm is held back any more', async (t) => {
  const timing = { bucketMs: 1000, retentionMs: 60_000 }
  const store = new MemoryStore({ node: 'n1', timing })
  const health = new HealthRegistry(
    [
      { id: 'a', host: '127.0.0.1', port: 1, weight: 100 },
      { id: 'b', host: '127.0.0.1', port: 2, weight: 100 },
    ],
    DEFAULTS.breaker,
    { probe: async () => null, store, log: pino({ level: 'silent' }) },
  )
  const lines: string[] = []
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l).msg as string) })
  const loop = new DetectorLoop(DETECTOR_DEFAULTS, timing, store, health, log)
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  const idle = { evaluations: [], eject: [], wouldEject: [], degraded: false, budget: 1, poolRate: 0 }
  const frozenThen: boolean[] = [true, false, true, false]
  loop.detector.step = () => ({ ...idle, frozen: frozenThen.shift() ?? false })
  let out = ['a']
  health.outByDetector = () => out
  loop.round()
  loop.round() // a's alarm held back clears while b is still out: the budget is not free
  loop.round()
  out = []
  loop.round() // b is back: now it is
  t.same(
    lines.filter((l) => /budget|held back/.test(l)).map((l) => l.replace(/ \(.*/, '')),
    [
      'detector budget reached',
      'no alarm held back by the detector budget any more',
      'detector budget reached',
      'detector budget free again',
    ],
  )
})

t.test('a re-admitted backend is judged on buckets that began after its re-admission only', async (t) => {
  // The last episode's counts can arrive late (a node kept them through a Redis outage and flushes them when Redis
  // returns): they were acted on already and must not eject the backend again in its probation.
  const timing = { bucketMs: 1000, retentionMs: 60_000 }
  const t0 = 1_000_000_000_000
  let clock = t0
  const store = new MemoryStore({ node: 'n1', timing })
  const health = new HealthRegistry(
    ['a', 'b', 'c'].map((id, i) => ({ id, host: '127.0.0.1', port: i + 1, weight: 100 })),
    DEFAULTS.breaker,
    { probe: async () => null, store, log: pino({ level: 'silent' }), now: () => clock },
  )
  const loop = new DetectorLoop(DETECTOR_DEFAULTS, timing, store, health, pino({ level: 'silent' }))
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  const fed: number[] = []
  const step = loop.detector.step.bind(loop.detector)
  loop.detector.step = (now, inc, window, views) => {
    fed.push(inc.get('a')?.fail ?? 0)
    return step(now, inc, window, views)
  }
  const healthyTraffic = (at: number) => {
    store.recordOutcomes('b', 300, 0, at)
    store.recordOutcomes('c', 300, 0, at)
  }
  healthyTraffic(t0 + 100)
  await store.setOverride('a', { state: 'ejected', by: 'test', reason: 'broken', at: clock, until: null })
  loop.round(t0 + 500)
  t.equal(health.status('a').manual?.state, 'ejected', 'a is out')

  clock = t0 + 1500
  await store.setOverride('a', null)
  t.equal(health.status('a').state, 'probation', 'a is back, in probation')
  t.equal(health.returnedAt('a'), t0 + 1500)
  // Late counts of the episode before: in a bucket before the re-admission, and in the one it began in.
  store.recordOutcomes('a', 0, 30, t0 + 200)
  store.recordOutcomes('a', 0, 30, t0 + 1200)
  healthyTraffic(t0 + 1300)
  const late = loop.round(t0 + 1600)
  t.same(late.eject, [], 'the late counts of the last episode eject nobody')
  t.equal(health.status('a').state, 'probation', 'a stays in probation')

  // Faults after the re-admission count as ever: the stricter probation detector ejects it.
  clock = t0 + 2500
  store.recordOutcomes('a', 0, 30, t0 + 2100)
  healthyTraffic(t0 + 2200)
  const fresh = loop.round(t0 + 2500)
  t.same(
    fresh.eject.map((e) => [e.id, e.reason]),
    [['a', 'probation']],
    'fresh faults in probation eject it',
  )
  t.same(fed, [0, 0, 30], 'only the fresh faults were fed to the detector')
})

t.test('a backend a reload adds follows another node’s live ejection of it, decided before the reload', async (t) => {
  // Rolling reloads: node n2 added the new backend first, and its probation detector ejected it; this node adds it
  // later and must not send it mail until n2's ejection ends.
  const timing = { bucketMs: 1000, retentionMs: 60_000 }
  // The store drops ejections whose end has passed by the real clock.
  let clock = Date.now()
  const store = new MemoryStore({ node: 'n1', timing })
  const health = new HealthRegistry([{ id: 'a', host: '127.0.0.1', port: 1, weight: 100 }], DEFAULTS.breaker, {
    probe: async () => 'unused' as never,
    store,
    log: pino({ level: 'silent' }),
    now: () => clock,
  })
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  await store.setEjection('x', {
    reason: 'probation: 12 faults in 40 messages',
    at: clock,
    until: clock + 60_000,
    count: 1,
    node: 'n2',
  })
  clock += 5_000
  health.addBackend('x')
  t.equal(health.status('x').state, 'ejected', 'ejected here too, by n2')
  t.equal(health.returnedAt('x'), clock, 'for the detector it came into rotation at the reload')
})
