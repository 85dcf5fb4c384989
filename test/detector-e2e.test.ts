// The detector end to end: real fake backends with seeded fault probabilities, a real engine (relay, breakers,
// store, detector loop) with a short bucket, a bounded number of messages sent one at a time so runs repeat.

import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { toWireForm } from '../src/backend/wire'
import { backendDetail } from '../src/cli/backend-detail'
import { statusTable } from '../src/cli/table'
import type { MxgateConfig } from '../src/config/schema'
import { Engine } from '../src/engine'
import type { InboundMessage } from '../src/message'
import { NodeAdmin } from '../src/node-admin'
import type { AcceptResult } from '../src/relay/accept'
import type { FakeBackendOptions } from '../src/testing/fake-backend'
import { createRng, type FaultRule } from '../src/testing/fault-rules'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startBackends, testConfig } from './helpers/engine'

function message(to: string[]): InboundMessage {
  return {
    id: randomUUID(),
    envelope: { from: 'sender@remote.test', to },
    body: toWireForm(makeTestMessage({ to })),
    receivedAt: Date.now(),
  }
}

interface Run {
  engine: Engine
  sent: number
  results: AcceptResult[]
  /** Ejections by cause, in order. */
  ejections: Array<{ id: string; cause: string }>
  wouldEject: string[]
}

const background = (p: number): FaultRule => ({
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Temporary failure',
  probability: p,
})

/** Starts backends and an engine (seeded pool choice), sends up to `max` messages until `done`, and closes. */
async function run(
  t: Test,
  specs: FakeBackendOptions[],
  opts: { max: number; seed: number; tweak?: (c: MxgateConfig) => void; done?: (r: Run) => boolean },
): Promise<Run> {
  const backends = await startBackends(specs.map((s, i) => ({ seed: opts.seed * 100 + i, ...s })))
  const config = testConfig(backends, (c) => {
    c.detector.bucketMs = 200
    c.detector.retentionMs = 120_000
    c.breaker.ejectionMs = 60_000 // an ejected backend stays out for the rest of the run
    c.breaker.maxEjectionMs = 60_000
    opts.tweak?.(c)
  })
  const engine = new Engine(config, { random: createRng(opts.seed) })
  await engine.start()
  t.teardown(async () => {
    await engine.close()
    await Promise.all(backends.map((b) => b.stop()))
  })
  const r: Run = { engine, sent: 0, results: [], ejections: [], wouldEject: [] }
  engine.health.on('ejection', (e: { id: string; cause: string }) => r.ejections.push({ id: e.id, cause: e.cause }))
  engine.detector.on('wouldEject', (e) => r.wouldEject.push(e.id))
  while (r.sent < opts.max && !(opts.done?.(r) ?? false)) {
    r.results.push(await engine.accept(message(['user@example.com'])))
    r.sent++
    if (r.sent % 50 === 0) engine.detector.round()
  }
  engine.detector.round()
  return r
}

const byDetector = (r: Run) => r.ejections.filter((e) => e.cause === 'detector' || e.cause === 'probation')
/** Neither delivered nor durable in the spool, or refused to the sender. */
const lost = (r: Run) => r.results.filter((x) => x.outcome === 'spool-failed' || x.relay.outcome === 'rejected').length
const spooled = (r: Run) => r.results.filter((x) => x.outcome === 'spooled').length

t.test('a 3% failer among four 0.5% failers is ejected by the detector, and no other', async (t) => {
  const spec = (p: number): FakeBackendOptions => ({ faults: [background(p)] })
  const r = await run(t, [spec(0.005), spec(0.005), spec(0.03), spec(0.005)], {
    max: 3000,
    seed: 1,
    done: (r) => byDetector(r).length > 0,
  })
  t.same(byDetector(r), [{ id: 'b3', cause: 'detector' }], `b3 ejected after ${r.sent} messages`)
  t.match(
    await r.engine.metrics.registry.metrics(),
    /mxgate_backend_ejections_total\{backend="b3",reason="detector"\} 1/,
  )
  t.equal(lost(r), 0, '0 lost')
  t.equal(spooled(r), 0, 'every message delivered inline (failover)')
  const s = r.engine.health.status('b3')
  t.equal(s.ejectedBy, 'detector')
  t.ok(s.evidence !== null && s.evidence.statistic >= s.evidence.threshold)
  t.match(s.reason, /^detector: \d+ faults in \d+ messages .* vs the rest of the pool's .*CUSUM/)
  // The same evidence in GET /api/backends/b3 and in `mxgate status b3`.
  const view = new NodeAdmin(r.engine).backend('b3')
  t.match(view.detector, { ejectedBy: 'detector', evidence: { signal: 'fault', threshold: 16 } })
  t.ok(view.detector!.evidence!.faults >= 8 && view.detector!.evidence!.messages > view.detector!.evidence!.faults)
  const text = backendDetail('n1', view, Date.now())
  t.match(text, /ejected by {2}detector/)
  t.match(text, /evidence {4}\d+ faults in \d+ messages \(window rate [\d.]+%\) vs the rest of the pool's [\d.]+%/)
  t.match(text, /CUSUM [\d.]+ ≥ threshold 16/)
})

t.test('a backend whose lookup refuses 3% of real users with 550 5.1.1 is ejected; no sender hears it', async (t) => {
  const lookup: FaultRule = { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', probability: 0.03 }
  const r = await run(t, [{}, {}, { faults: [lookup] }, {}], {
    max: 3000,
    seed: 2,
    done: (r) => byDetector(r).length > 0,
  })
  t.same(byDetector(r), [{ id: 'b3', cause: 'detector' }], `b3 ejected after ${r.sent} messages`)
  t.equal(r.results.flatMap((x) => x.relay.refused).length, 0, '0 of the 550s reached a sender or a DSN')
  t.equal(lost(r), 0)
})

t.test('observe mode ejects nothing but says and exports "would eject"', async (t) => {
  const spec = (p: number): FakeBackendOptions => ({ faults: [background(p)] })
  const r = await run(t, [spec(0.005), spec(0.005), spec(0.03), spec(0.005)], {
    max: 3000,
    seed: 1,
    tweak: (c) => {
      c.detector.mode = 'observe'
    },
    done: (r) => r.wouldEject.length > 0,
  })
  t.same(r.wouldEject, ['b3'])
  t.same(byDetector(r), [])
  t.equal(r.engine.health.status('b3').state, 'admitted')
  const metrics = await r.engine.metrics.registry.metrics()
  t.match(metrics, /mxgate_detector_would_eject\{backend="b3"\} 1/)
  const table = statusTable('n1', new NodeAdmin(r.engine).backends(), Date.now(), { colour: false })
  t.match(table, /detector in observe mode; detector would eject b3/)
})

t.test('when every backend degrades together nobody is ejected and the pool is flagged degraded', async (t) => {
  const spec: FakeBackendOptions = { faults: [background(0.2)] }
  const r = await run(t, [spec, spec, spec, spec], { max: 800, seed: 3 })
  t.same(byDetector(r), [])
  t.equal(r.engine.detector.lastRound?.degraded, true)
  t.equal(lost(r), 0, 'nothing lost: failover delivers, the spool keeps the rest')
  t.match(await r.engine.metrics.registry.metrics(), /mxgate_detector_pool_degraded 1/)
})

t.test('two 3% failers with a budget of one: one ejected, the freeze flagged, nothing lost', async (t) => {
  const spec = (p: number): FakeBackendOptions => ({ faults: [background(p)] })
  const r = await run(t, [spec(0.03), spec(0.005), spec(0.03), spec(0.005)], {
    max: 3000,
    seed: 4,
    done: (r) => r.engine.detector.lastRound?.frozen === true,
  })
  t.equal(byDetector(r).length, 1, `one ejected: ${JSON.stringify(byDetector(r))}`)
  t.ok(['b1', 'b3'].includes(byDetector(r)[0]?.id ?? ''))
  t.equal(r.engine.detector.lastRound?.frozen, true, 'the freeze is flagged')
  t.match(await r.engine.metrics.registry.metrics(), /mxgate_detector_budget_frozen 1/)
  const table = statusTable('n1', new NodeAdmin(r.engine).backends(), Date.now(), { colour: false })
  t.match(table, /detector budget reached: further ejections held back/)
  t.equal(lost(r), 0, 'nothing lost')
})

t.test('a backend in probation failing 10% is ejected by the stricter probation test, on a small share', async (t) => {
  const spec = (p: number): FakeBackendOptions => ({ faults: [background(p)] })
  let restored = false
  const r = await run(t, [spec(0.005), spec(0.005), spec(0.1), spec(0.005)], {
    max: 5000,
    seed: 6,
    tweak: (c) => {
      c.breaker.slowStartMs = 600_000 // stays in probation for the whole run
      c.breaker.probationMessages = 10_000
    },
    done: (r) => {
      if (!restored) {
        restored = true
        // An operator's restore puts b3 in probation (a new or repaired backend).
        void r.engine.health.eject('b3', 'repair', null, 'ops').then(() => r.engine.health.restore('b3', 'ops'))
      }
      return byDetector(r).length > 0
    },
  })
  t.same(byDetector(r), [{ id: 'b3', cause: 'probation' }], `b3 ejected after ${r.sent} messages`)
  const toB3 = r.results.filter((x) => x.relay.attempts.some((a) => a.backendId === 'b3')).length
  t.ok(toB3 / r.sent < 0.05, `b3 carried ${toB3} of ${r.sent} messages meanwhile`)
  t.match(r.engine.health.status('b3').reason, /^probation: /)
  t.equal(lost(r), 0)
})
