// The status page's data: outcome counts kept past the store's retention, in steps, with the pool summed; and the
// bounded log of state changes with ejections marked.
import t from 'tap'
import { MemoryStore } from '../src/cluster/memory-store'
import { OutcomeHistory } from '../src/health/outcome-history'
import type { BackendStatus } from '../src/health/registry'
import { StateLog, shownState } from '../src/health/state-log'

const BUCKET = 10_000
const RETENTION = 60_000
const T0 = Date.parse('2026-12-01T10:00:00Z')

function setup() {
  const store = new MemoryStore({ node: 'n1', timing: { bucketMs: BUCKET, retentionMs: RETENTION } })
  const history = new OutcomeHistory(store, () => ['mx1', 'mx2'], { bucketMs: BUCKET, retentionMs: RETENTION })
  return { store, history }
}

t.test('keeps buckets the store has forgotten, and sums the pool', async (t) => {
  const { store, history } = setup()
  await store.start()
  // Ten minutes of traffic, one bucket at a time, refreshed once per bucket as the timer does.
  for (let i = 0; i < 60; i++) {
    const at = T0 + i * BUCKET
    store.recordOutcomes('mx1', 9, 1, at)
    store.recordOutcomes('mx2', 10, 0, at)
    history.settle(at + 1)
  }
  const now = T0 + 59 * BUCKET + 5
  t.equal(store.pooledOutcomes('mx1', 30 * 60_000, now).ok, 7 * 9, 'the store holds only its retention')
  const s = history.series(10 * 60_000, now)
  t.equal(s.stepMs, BUCKET, 'ten minutes in 10 s buckets fit in 60 points')
  const sum = (pts: { ok: number; fail: number }[]) =>
    pts.reduce((a, p) => ({ ok: a.ok + p.ok, fail: a.fail + p.fail }), { ok: 0, fail: 0 })
  t.same(sum(s.backends.mx1!), { ok: 540, fail: 60 }, 'all sixty buckets of mx1 are kept')
  t.same(sum(s.backends.mx2!), { ok: 600, fail: 0 })
  t.same(sum(s.pool), { ok: 1140, fail: 60 }, 'the pool is the sum of the backends')
  t.equal(s.to - s.from, s.backends.mx1!.length * s.stepMs)
  t.ok(
    s.backends.mx1!.every((p, i) => p.at === s.from + i * s.stepMs),
    'one point per step, in order',
  )
})

t.test('a longer window is drawn in wider steps of whole buckets, at most 60 points', async (t) => {
  const { store, history } = setup()
  await store.start()
  store.recordOutcomes('mx1', 3, 1, T0)
  const s = history.series(30 * 60_000, T0 + 5)
  t.equal(s.stepMs, 30_000)
  t.equal(s.backends.mx1!.length, 60)
  t.same(s.backends.mx1!.at(-1), { at: T0, ok: 3, fail: 1 }, 'the current bucket is in the last step')
  t.equal(history.series(99 * 60_000, T0 + 5).backends.mx1!.length, 60, 'never more than the half hour kept')
})

t.test('re-reads recent buckets: counts that arrive late are not lost', async (t) => {
  const { store, history } = setup()
  await store.start()
  store.recordOutcomes('mx1', 1, 0, T0)
  history.settle(T0 + 1)
  store.recordOutcomes('mx1', 4, 2, T0 + 5) // another node's counts for the same bucket, seen later
  history.settle(T0 + BUCKET + 1)
  const last = history.series(BUCKET * 5, T0 + BUCKET + 1).backends.mx1!
  t.same(
    last.find((p) => p.at === T0),
    { at: T0, ok: 5, fail: 2 },
  )
})

t.test('forgets what is older than the half hour it keeps', async (t) => {
  const { store, history } = setup()
  await store.start()
  store.recordOutcomes('mx1', 7, 0, T0)
  for (let at = T0; at <= T0 + 31 * 60_000; at += BUCKET) {
    history.settle(at)
    if (at === T0 + 5 * 60_000) {
      const kept = history.series(30 * 60_000, at).pool.reduce((n, p) => n + p.ok, 0)
      t.equal(kept, 7, 'kept after the store forgot it')
    }
  }
  const s = history.series(30 * 60_000, T0 + 31 * 60_000)
  t.equal(
    s.pool.reduce((n, p) => n + p.ok, 0),
    0,
    'gone after half an hour',
  )
})

function status(id: string, over: Partial<BackendStatus> = {}): BackendStatus {
  return {
    id,
    state: 'admitted',
    reason: null,
    since: T0,
    until: null,
    ejections: 0,
    window: { total: 0, failures: 0, ratio: 0 } as unknown as BackendStatus['window'],
    lastFault: null,
    manual: null,
    recent: { ok: 0, fail: 0, spanMs: 300_000 },
    ejectedBy: null,
    evidence: null,
    ...over,
  }
}

t.test('the state log marks ejections with their cause and reason, and skips repeats', async (t) => {
  let now = T0
  const log = new StateLog(() => now)
  log.note(status('mx1', { state: 'ejected', reason: 'detector: 4% vs 0.1%', ejectedBy: 'detector' }))
  now += 1000
  log.note(status('mx1', { state: 'ejected', reason: 'detector: 4% vs 0.1%', ejectedBy: 'detector' }))
  log.note(status('mx1', { state: 'probing', reason: 'ejection time over' }))
  now += 1000
  const manual = { state: 'ejected' as const, by: 'ops', reason: 'disk swap', at: now, until: null }
  log.note(status('mx2', { manual }))
  t.equal(shownState(status('mx2', { manual })), 'manual-ejected')
  t.same(
    log.since(0).map((e) => [e.at - T0, e.backend, e.state, e.reason, e.cause]),
    [
      [0, 'mx1', 'ejected', 'detector: 4% vs 0.1%', 'detector'],
      [1000, 'mx1', 'probing', 'ejection time over', null],
      [2000, 'mx2', 'manual-ejected', 'disk swap', 'operator'],
    ],
  )
  t.equal(log.since(T0 + 1500).length, 1)
})

t.test('the state log is bounded', async (t) => {
  let now = T0
  const log = new StateLog(() => now)
  for (let i = 0; i < 500; i++) {
    now++
    log.note(status('mx1', { state: i % 2 === 0 ? 'ejected' : 'probing', reason: `round ${i}` }))
  }
  const all = log.since(0)
  t.equal(all.length, 200)
  t.equal(all.at(-1)!.reason, 'round 499', 'the newest are kept')
})
