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
