// Manual overrides win over automatic state; restore and expiry ramp the backend up again.

import { Writable } from 'node:stream'
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
    { ...DEFAULTS.breaker, slowStartMs: 300, probationMessages: 0 },
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

t.test('probation holds a flat share until its good messages are in, then ramps up over slow_start', async (t) => {
  const store = new MemoryStore({ node: 'n1' })
  const health = new HealthRegistry(
    [{ id: 'a', host: '127.0.0.1', port: 1, weight: 100 }],
    { ...DEFAULTS.breaker, slowStartMs: 300, probationShare: 0.25, probationMessages: 3 },
    { probe: async () => null, store, log: pino({ level: 'silent' }) },
  )
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  await health.eject('a', 'test', null, 'alice')
  await health.restore('a', 'alice')
  t.equal(health.status('a').state, 'probation')
  t.equal(health.admission('a').weightFactor, 0.25, 'a flat 25% of its weight')
  health.settle('a', false, false)
  health.settle('a', true, false)
  health.settle('a', false, false)
  t.equal(health.status('a').state, 'probation', 'a fault does not count as good')
  t.equal(health.admission('a').weightFactor, 0.25, 'still flat before the third good message')
  health.settle('a', false, false)
  t.equal(health.status('a').state, 'probation', 'the good messages start the ramp; its time is still to run')
  // Bounded: slow_start is 300 ms.
  for (let i = 0; i < 500 && health.status('a').state === 'probation'; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(health.status('a').state, 'admitted', 'three good messages, then the ramp: admitted')
  t.equal(health.admission('a').weightFactor, 1)
  t.same(store.pooledOutcomes('a', 60_000), { ok: 3, fail: 1, refused: 0 })
})

t.test('the detector ejects with its evidence, counted against the budget until re-admitted', async (t) => {
  const { health } = registry(t)
  const ejections: unknown[] = []
  health.on('ejection', (e) => ejections.push(e))
  const evidence = {
    signal: 'fault' as const,
    faults: 14,
    messages: 470,
    rate: 0.03,
    poolRate: 0.005,
    statistic: 15.2,
    threshold: 15,
    firstFaultAt: null,
  }
  t.ok(health.ejectByDetector('a', 'detector', '14 faults in 470 messages', evidence))
  const s = health.status('a')
  t.equal(s.state, 'ejected')
  t.equal(s.ejectedBy, 'detector')
  t.same(s.evidence, evidence)
  t.match(s.reason, /^detector: 14 faults in 470 messages/)
  t.same(health.outByDetector(), ['a'])
  t.match(ejections, [{ id: 'a', cause: 'detector' }])
  t.notOk(health.ejectByDetector('a', 'detector', 'again', evidence), 'not twice')
})

t.test('a failed probe after a detector ejection keeps it the detector’s (and in its budget)', async (t) => {
  const store = new MemoryStore({ node: 'n1' })
  let probes = 0
  const health = new HealthRegistry(
    [{ id: 'a', host: '127.0.0.1', port: 1, weight: 100 }],
    { ...DEFAULTS.breaker, ejectionMs: 100, maxEjectionMs: 400 },
    {
      probe: async () => {
        probes++
        return { stage: 'ehlo', kind: 'reply', message: 'EHLO refused', reply: null, elapsedMs: 1 }
      },
      store,
      log: pino({ level: 'silent' }),
    },
  )
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  const evidence = {
    signal: 'fault' as const,
    faults: 9,
    messages: 300,
    rate: 0.03,
    poolRate: 0.005,
    statistic: 15.1,
    threshold: 15,
    firstFaultAt: null,
  }
  health.ejectByDetector('a', 'detector', '9 faults in 300 messages', evidence)
  t.ok(await waitFor(() => probes >= 1 && health.status('a').state === 'ejected', 3000), 're-ejected by its probe')
  t.equal(health.status('a').ejectedBy, 'detector')
  t.same(health.outByDetector(), ['a'])
})

t.test('the ejection log line carries the detector’s evidence', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)))
      done()
    },
  })
  const store = new MemoryStore({ node: 'n1' })
  const health = new HealthRegistry([{ id: 'a', host: '127.0.0.1', port: 1, weight: 100 }], DEFAULTS.breaker, {
    probe: async () => null,
    store,
    log: pino(sink),
  })
  t.teardown(() => {
    health.close()
    return store.stop()
  })
  const evidence = {
    signal: 'fault' as const,
    faults: 12,
    messages: 410,
    rate: 0.029,
    poolRate: 0.005,
    statistic: 15.3,
    threshold: 15,
    firstFaultAt: 1,
  }
  health.ejectByDetector('a', 'detector', '12 faults in 410 messages', evidence)
  const line = lines.find((l) => l.to === 'ejected')
  t.match(line, { msg: 'backend a ejected: detector: 12 faults in 410 messages', evidence })
})
