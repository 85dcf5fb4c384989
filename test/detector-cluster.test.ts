// Evidence is pooled over nodes through Redis: node A carries no mail at all and still ejects the failing backend
// (5% against 0.5%) on node B's counts; B (in observe mode, so only A may act) follows A's shared ejection.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { toWireForm } from '../src/backend/wire'
import { Engine } from '../src/engine'
import type { InboundMessage } from '../src/message'
import { createRng, type FaultRule } from '../src/testing/fault-rules'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startBackends, testConfig } from './helpers/engine'
import { waitFor } from './helpers/ports'
import { startRedis } from './helpers/redis-server'

const background = (p: number): FaultRule => ({
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Temporary failure',
  probability: p,
})

function message(): InboundMessage {
  return {
    id: randomUUID(),
    envelope: { from: 'sender@remote.test', to: ['user@example.com'] },
    body: toWireForm(makeTestMessage({ to: ['user@example.com'] })),
    receivedAt: Date.now(),
  }
}

t.test('a node with no traffic of its own ejects on the pooled counts of another', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const backends = await startBackends(
    [0.005, 0.005, 0.05, 0.005].map((p, i) => ({ seed: 500 + i, faults: [background(p)] })),
  )
  t.teardown(() => Promise.all(backends.map((b) => b.stop())))
  const prefix = `test-${randomUUID()}:`
  const node = async (name: string, mode: 'enforce' | 'observe') => {
    const config = testConfig(backends, (c) => {
      c.redis.url = redis.url
      c.redis.prefix = prefix
      c.detector.mode = mode
      c.detector.bucketMs = 1000
      c.detector.retentionMs = 120_000
      c.breaker.ejectionMs = 60_000
      c.breaker.maxEjectionMs = 60_000
    })
    const engine = new Engine(config, { random: createRng(9), node: name })
    await engine.start()
    t.teardown(() => engine.close())
    return engine
  }
  const A = await node('A', 'enforce')
  const B = await node('B', 'observe')
  let sent = 0
  while (sent < 6000 && A.health.status('b3').state !== 'ejected') {
    await B.accept(message())
    sent++
    // About 200 messages/s, so the counts (flushed every 1 s, polled every 2 s) keep up with the sending.
    if (sent % 10 === 0) await new Promise((r) => setTimeout(r, 50))
  }
  t.ok(await waitFor(() => A.health.status('b3').state === 'ejected', 10_000), `A ejected b3 (B sent ${sent})`)
  const a = A.health.status('b3')
  t.equal(a.ejectedBy, 'detector')
  t.ok(a.evidence !== null && a.evidence.messages > 0, 'on evidence A never carried itself')
  t.equal(A.store.pooledOutcomes('b3', 120_000).ok > 0, true)
  t.ok(await waitFor(() => B.health.status('b3').state === 'ejected', 5000), 'B follows A')
  t.match(B.health.status('b3').reason, /^ejected by A: detector: /)
  t.equal(B.health.status('b3').ejectedBy, 'detector', 'B counts it against the budget as a detector ejection')
  for (const id of ['b1', 'b2', 'b4']) t.not(A.health.status(id).state, 'ejected', `${id} stays in`)
})
