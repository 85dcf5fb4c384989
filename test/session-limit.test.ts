// mxgate's own session limit (backend_client.max_sessions) is nobody's fault (issue 8, "Blame" item 1): a burst
// larger than sessions × backends waits a bounded time for a session, fails over, and spools the rest; no backend
// is charged, none is ejected, nothing is lost. Real SMTP over loopback to slow fake backends.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { toWireForm } from '../src/backend/wire'
import type { InboundMessage } from '../src/message'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'

function message(i: number): InboundMessage {
  const to = ['user@example.com']
  return {
    id: randomUUID(),
    envelope: { from: 'sender@remote.test', to },
    body: toWireForm(makeTestMessage({ to, subject: `burst ${i}` })),
    receivedAt: Date.now(),
  }
}

t.test('a burst beyond max_sessions × backends ejects no healthy backend and loses nothing', async (t) => {
  const slow = { acceptDelayMs: 500 }
  const rig = await startRig([slow, slow], {
    tweak: (c) => {
      c.client.maxSessions = 1
      c.client.sessionWaitMs = 200
      c.relay.deadlineMs = 1500
      c.client.timeouts.dot = 2000
      c.breaker.minVolume = 3
    },
  })
  t.teardown(() => rig.close())
  const burst = 12
  const results = await Promise.all(Array.from({ length: burst }, (_, i) => rig.engine.accept(message(i))))

  for (const id of ['b1', 'b2']) {
    const s = rig.engine.health.status(id)
    t.equal(s.state, 'admitted', `${id} stays admitted`)
    t.equal(s.window.faults, 0, `${id} is charged nothing`)
  }
  const relayed = results.filter((r) => r.outcome === 'relayed' && r.relay.outcome === 'delivered').length
  const spooled = results.filter((r) => r.outcome === 'spooled').length
  const received = rig.backends.reduce((n, b) => n + b.received.length, 0)
  t.equal(relayed + spooled, burst, `every message relayed (${relayed}) or spooled (${spooled})`)
  t.equal(received, relayed, 'the backends hold exactly the relayed ones')
  t.equal(rig.engine.spool.list().length, spooled, 'the spool holds the rest')
  t.ok(relayed >= 2, 'both backends took mail')
  const saturated = results.flatMap((r) => r.relay.attempts).filter((a) => a.verdict === 'saturated')
  t.ok(saturated.length > 0, 'waits for a session that ran out are recorded as saturated')
  t.match(saturated[0]?.detail, /all 1 sessions to b[12] stayed busy for 2\d\d ms/)

  const metrics = await rig.engine.metrics.registry.metrics()
  t.match(metrics, /mxgate_backend_session_waits_total\{backend="b[12]",result="saturated"\} [1-9]/)
  t.match(metrics, /mxgate_backend_attempts_total\{backend="b[12]",verdict="saturated"\} [1-9]/)
})
