// Manual overrides win over automatic state; restore and expiry ramp the backend up again.

import pino from 'pino'
import t, { type Test } from 'tap'
import { MemoryStore } from '../src/cluster'
import { DEFAULTS } from '../src/config/schema'
import { HealthRegistry } from '../src/health/registry'
import { waitFor } from './helpers/ports'

function registry(t: Test, now?: () => number) {
  const store = new MemoryStore({ node: 'n1' })
  const health = new HealthRegistry(
    [
      { id: 'a', host: '127.0.0.1', port: 1, weight: 100 },
      { id: 'b', host: '127.0.0.1', port: 2, weight: 100 },
    ],
    { ...DEFAULTS.breaker, slowStartMs: 300 },
    { probe: async () => null, store, log: pino({ level: 'silent' }), ...(now ? { now } : {}) },
  )
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  return { store, health }
}

t.test('a manual ejection takes the backend out until restored, then it ramps up', async (t) => {
  // The ramp is read on a stopped clock: a test process descheduled for a third of slow_start (a loaded machine)
  // would otherwise see it half done. The clock runs again before the wait for the end of probation.
  let stoppedAt: number | null = null
  const { health } = registry(t, () => stoppedAt ?? Date.now())
  t.equal(health.admission('a').allowed, true)
  await health.eject('a', 'disk replacement', null, 'alice')
  t.equal(health.admission('a').allowed, false)
  t.match(health.status('a').manual, { state: 'ejected', by: 'alice', reason: 'disk replacement', until: null })
  stoppedAt = Date.now()
  await health.restore('a', 'alice')
  t.equal(health.status('a').manual, null)
  t.equal(health.status('a').state, 'probation')
  const a = health.admission('a')
  t.ok(a.allowed && a.weightFactor < 0.5, `ramping (weight factor ${a.weightFactor.toFixed(2)})`)
  stoppedAt = null
  t.ok(await waitFor(() => health.status('a').state === 'admitted', 3000))
})

t.test('a manual ejection with an expiry lapses by itself', async (t) => {
  const { health } = registry(t)
  await health.eject('b', 'short test', 300, 'bob')
  t.equal(health.admission('b').allowed, false)
  t.ok(await waitFor(() => health.admission('b').allowed, 3000), 'admitted again after the expiry')
  t.equal(health.status('b').manual, null)
})

t.test('draining admits no new messages', async (t) => {
  const { health } = registry(t)
  await health.drain('a', 'maintenance', 'carol')
  t.equal(health.admission('a').allowed, false)
  t.match(health.status('a').manual, { state: 'draining', by: 'carol' })
  t.equal(health.admission('b').allowed, true, 'the others are untouched')
})

t.test('restore clears an automatic ejection too', async (t) => {
  const { health, store } = registry(t)
  const failing = async () => ({
    backendId: 'a',
    ok: false,
    accepted: [],
    refused: [],
    dotReply: null,
    failure: null,
    elapsedMs: 0,
    reusedSession: false,
  })
  for (let i = 0; i < 6; i++) await health.track('a', failing, () => 'connect refused')
  t.equal(health.status('a').state, 'ejected')
  t.match(store.ejections().get('a'), { node: 'n1', count: 1 }, 'the ejection is shared through the store')
  await health.restore('a', 'dave')
  t.equal(health.status('a').state, 'probation')
  t.equal(store.ejections().has('a'), false)
})
