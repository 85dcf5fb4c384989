// Canary evidence in the health registry: ejection with cause canary (counted against the detector's budget, shared
// with its prefix), and probation that waits for returned canaries.
import pino from 'pino'
import t, { type Test } from 'tap'
import { MemoryStore } from '../src/cluster'
import { DEFAULTS } from '../src/config/schema'
import { causeOfShared, HealthRegistry } from '../src/health/registry'
import { waitFor } from './helpers/ports'

function registry(t: Test, probationReturns: number) {
  const store = new MemoryStore({ node: 'n1' })
  const health = new HealthRegistry(
    [
      { id: 'a', host: '127.0.0.1', port: 1, weight: 100 },
      { id: 'b', host: '127.0.0.1', port: 2, weight: 100 },
    ],
    { ...DEFAULTS.breaker, slowStartMs: 0, probationMessages: 0 },
    { probe: async () => null, store, log: pino({ level: 'silent' }), probationReturns },
  )
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  return { store, health }
}

const evidence = {
  signal: 'canary' as const,
  faults: 1,
  messages: 1,
  rate: 1,
  poolRate: 0,
  statistic: 1.8,
  threshold: 5,
  firstFaultAt: 0,
}

t.test(
  'a canary ejection is the detector kind: cause canary, evidence kept, counted as out by the detector',
  async (t) => {
    const { health, store } = registry(t, 0)
    t.equal(health.ejectByDetector('a', 'canary', 'lost after 250: none back', evidence), true)
    const s = health.status('a')
    t.equal(s.state, 'ejected')
    t.equal(s.ejectedBy, 'canary')
    t.same(s.evidence, evidence)
    t.equal(s.reason, 'canary: lost after 250: none back')
    t.same(health.outByDetector(), ['a'])
    t.match(store.ejections().get('a'), { reason: 'canary: lost after 250: none back' })
    t.equal(causeOfShared('canary: lost after 250: none back'), 'canary', 'other nodes count it as a canary ejection')
  },
)

t.test('probation waits for canary.probation_returns returned canaries', async (t) => {
  const { health } = registry(t, 2)
  await health.eject('a', 'maintenance', null, 'ops')
  await health.restore('a', 'ops')
  t.equal(health.status('a').state, 'probation')
  t.match(health.status('a').reason, /2 canaries must come back/)
  health.canaryReturned('a')
  t.equal(health.status('a').state, 'probation', 'one of two is not enough')
  health.canaryReturned('a')
  t.ok(await waitFor(() => health.status('a').state === 'admitted', 3000), 'admitted after the second')
})

t.test('without probation_returns a restored backend is admitted as before', async (t) => {
  const { health } = registry(t, 0)
  await health.eject('b', 'maintenance', null, 'ops')
  await health.restore('b', 'ops')
  t.ok(await waitFor(() => health.status('b').state === 'admitted', 3000))
})
