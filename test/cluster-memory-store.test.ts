import t, { type Test } from 'tap'
import { InvalidStateError, StoreOptionError, StoreStoppedError } from '../src/cluster/errors'
import { MemoryStore } from '../src/cluster/memory-store'
import type { AutoEjection, ChangeEvent, ManualOverride } from '../src/cluster/types'

const override = (over: Partial<ManualOverride> = {}): ManualOverride => ({
  state: 'ejected',
  by: 'alice',
  reason: 'bad deploy',
  at: Date.now(),
  until: null,
  ...over,
})

const ejection = (over: Partial<AutoEjection> = {}): AutoEjection => ({
  reason: 'failure ratio 4% vs pool 0.1%',
  at: Date.now(),
  until: Date.now() + 60_000,
  count: 1,
  node: 'n1',
  ...over,
})

async function started(t: Test): Promise<MemoryStore> {
  const store = new MemoryStore({ node: 'n1' })
  t.teardown(() => store.stop())
  await store.start()
  return store
}

t.test('is up once started and says so', async (t) => {
  const store = new MemoryStore({ node: 'n1' })
  t.equal(store.up, false)
  let ups = 0
  store.on('up', () => ups++)
  await store.start()
  await store.start()
  t.equal(store.up, true)
  t.equal(ups, 1)
  t.equal(store.node, 'n1')
  await store.stop()
  t.equal(store.up, false)
})

t.test('an override applies at once, and a restore removes it', async (t) => {
  const store = await started(t)
  const changes: ChangeEvent[] = []
  store.on('change', (c) => changes.push(c))
  const o = override({ state: 'draining' })
  await store.setOverride('b1', o)
  t.same(store.overrides().get('b1'), o)
  o.reason = 'mutated after the call'
  t.equal(store.overrides().get('b1')?.reason, 'bad deploy', 'the store keeps its own copy')
  await store.setOverride('b1', null)
  t.equal(store.overrides().has('b1'), false)
  t.same(changes, [
    { kind: 'override', id: 'b1', source: 'local' },
    { kind: 'override', id: 'b1', source: 'local' },
  ])
})

t.test('setting the same value again is not a change; restoring nothing is not either', async (t) => {
  const store = await started(t)
  const o = override()
  await store.setOverride('b1', o)
  let changes = 0
  store.on('change', () => changes++)
  await store.setOverride('b1', { ...o })
  await store.setOverride('b2', null)
  t.equal(changes, 0)
})

t.test('overrides with an until, and ejections, vanish from reads when their time has passed', async (t) => {
  const store = await started(t)
  const now = Date.now()
  await store.setOverride('timed', override({ until: now - 1 }))
  await store.setOverride('forever', override({ until: null }))
  await store.setEjection('gone', ejection({ until: now - 1 }))
  await store.setEjection('still', ejection({ until: now + 60_000 }))
  t.same([...store.overrides().keys()], ['forever'])
  t.same([...store.ejections().keys()], ['still'])
})

t.test('malformed states are refused with InvalidStateError', async (t) => {
  const store = await started(t)
  await t.rejects(store.setOverride('b1', override({ state: 'gone' as 'ejected' })), {
    code: 'EBADSTATE',
    message: `invalid state for backend "b1": override state must be 'ejected' or 'draining', got "gone"`,
  })
  await t.rejects(store.setEjection('b1', ejection({ until: Number.NaN })), InvalidStateError)
  await t.rejects(store.setEjection('', ejection()), InvalidStateError)
  t.equal(store.overrides().size + store.ejections().size, 0, 'nothing was stored')
})

t.test('outcomes are summed over the window, rounded out to whole buckets, within retention', async (t) => {
  const store = new MemoryStore({ node: 'n1', timing: { bucketMs: 1000, retentionMs: 10_000 } })
  t.teardown(() => store.stop())
  await store.start()
  const now = 1_000_000_500
  store.recordOutcomes('b1', 10, 1, now)
  store.recordOutcomes('b1', 5, 0, now - 3000)
  store.recordOutcomes('b1', 7, 7, now - 20_000) // older than retention: dropped
  store.recordOutcomes('b2', 1, 1, now)
  t.same(store.pooledOutcomes('b1', 1000, now), { ok: 10, fail: 1, refused: 0 })
  t.same(store.pooledOutcomes('b1', 5000, now), { ok: 15, fail: 1, refused: 0 })
  t.same(store.pooledOutcomes('b1', 60_000, now), { ok: 15, fail: 1, refused: 0 }, 'capped at retention')
  t.same(store.pooledOutcomes('nobody', 5000, now), { ok: 0, fail: 0, refused: 0 })
  store.recordOutcomes('b1', -5, 0, now)
  store.recordOutcomes('b1', 1.5, Number.NaN, now)
  t.same(
    store.pooledOutcomes('b1', 1000, now),
    { ok: 10, fail: 1, refused: 0 },
    'nonsense counts are dropped, not thrown',
  )
  store.recordOutcomes('b1', 3, 1, now, 2)
  t.same(store.pooledOutcomes('b1', 1000, now), { ok: 13, fail: 2, refused: 2 }, 'permanent refusals ride along')
})

t.test('after stop, writes are refused with StoreStoppedError', async (t) => {
  const store = await started(t)
  await store.stop()
  await t.rejects(store.setOverride('b1', override()), StoreStoppedError)
  store.recordOutcomes('b1', 1, 0)
  t.same(store.pooledOutcomes('b1', 60_000), { ok: 0, fail: 0, refused: 0 })
})

t.test('impossible timing is refused when the store is made', async (t) => {
  t.throws(() => new MemoryStore({ timing: { bucketMs: 10_000, retentionMs: 5000 } }), StoreOptionError)
  t.throws(() => new MemoryStore({ timing: { bucketMs: 5 } }), {
    message: 'state store option bucketMs: must be an integer of at least 100 ms, got 5',
  })
})
