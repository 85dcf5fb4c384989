// mxgate's own session limit (backend_client.max_sessions) is nobody's fault (issue 8, "Blame" item 1): a burst
// larger than sessions × backends waits a bounded time for a session, fails over, and spools the rest; no backend
// is charged, none is ejected, nothing is lost. Real SMTP over loopback to slow fake backends.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { BackendView } from '../src/admin/types'
import { toWireForm } from '../src/backend/wire'
import type { InboundMessage } from '../src/message'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'
import { startMxgate } from './helpers/mxgate-process'
import { parseMetrics } from './helpers/prom'

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

  for (const id of ['b1', 'b2']) t.equal(rig.engine.health.status(id).state, 'admitted', `${id} stays admitted`)
  const relayed = results.filter((r) => r.outcome === 'relayed' && r.relay.outcome === 'delivered').length
  const spooled = results.filter((r) => r.outcome === 'spooled').length
  const received = rig.backends.reduce((n, b) => n + b.received.length, 0)
  t.equal(relayed + spooled, burst, `every message relayed (${relayed}) or spooled (${spooled})`)
  t.equal(received, relayed, 'the backends hold exactly the relayed ones')
  t.equal(rig.engine.spool.list().length, spooled, 'the spool holds the rest')
  t.ok(relayed >= 2, 'both backends took mail')
  const saturated = results.flatMap((r) => r.relay.attempts).filter((a) => a.verdict === 'saturated')
  t.ok(saturated.length > 0, 'waits for a session that ran out are recorded as saturated')
  // Each wait really lasted session_wait (a lower bound only: a busy machine fires the timer late), unless the
  // message's deadline cut it short; then its relay ended on the deadline and says so.
  const fullWaits = results
    .filter((r) => r.relay.outcome !== 'deferred' || !/deadline of/.test(r.relay.reason))
    .flatMap((r) => r.relay.attempts)
    .filter((a) => a.verdict === 'saturated')
  t.ok(fullWaits.length > 0, 'some waits ran their full session_wait')
  const waited = fullWaits.map((a) =>
    Number(/^connect: all 1 sessions to b[12] stayed busy for (\d+) ms /.exec(a.detail)?.[1]),
  )
  t.same(
    waited.filter((ms) => !(ms >= rig.config.client.sessionWaitMs)),
    [],
    `every full wait lasted at least session_wait (${waited.join(', ')} ms)`,
  )

  // Failover within one relay call: the rig's pool picks b1 first for every message, so whichever message first
  // gives up waiting for b1's one session finds b2's free and is delivered there.
  const failedOver = results.find((r) => {
    const [first, second] = r.relay.attempts
    return (
      first?.verdict === 'saturated' &&
      second?.verdict === 'delivered' &&
      second.backendId !== first.backendId &&
      r.relay.deliveries.some((d) => d.backendId === second.backendId)
    )
  })
  t.ok(failedOver, 'a message saturated on one backend is delivered by the other in the same relay call')
  // Nothing was sent in a saturated attempt, so nothing is counted for or against the backend: its breaker, its
  // recent counts and the shared outcome counts (the detector's evidence) hold its deliveries and nothing else.
  for (const id of ['b1', 'b2']) {
    const delivered = results.filter((r) => r.relay.deliveries.some((d) => d.backendId === id)).length
    const s = rig.engine.health.status(id)
    t.equal(s.window.faults, 0, `${id}: no fault in its breaker`)
    // At most: the breaker's 10 s window may already have let the earliest deliveries go on a slow run.
    t.ok(s.window.attempts <= delivered, `${id}: its breaker counts ${s.window.attempts} of ${delivered} deliveries`)
    t.match(s.recent, { ok: delivered, fail: 0 }, `${id}: its recent counts are its ${delivered} deliveries`)
    t.same(rig.engine.store.pooledOutcomes(id, 600_000), { ok: delivered, fail: 0, refused: 0 }, `${id}: shared counts`)
  }

  const metrics = parseMetrics(await rig.engine.metrics.registry.metrics())
  t.equal(metrics.value('mxgate_backend_session_waits_total', { result: 'saturated' }), saturated.length)
  t.same(
    metrics.by('mxgate_backend_attempts_total', 'stage', { verdict: 'saturated' }),
    { connect: saturated.length },
    'a saturated attempt ends before it connects',
  )
})

t.test('through a real mxgate: every sender of a burst hears 250, no backend is ejected', async (t) => {
  const backends = [
    new FakeBackend({ id: 'mx1', acceptDelayMs: 400 }),
    new FakeBackend({ id: 'mx2', acceptDelayMs: 400 }),
  ]
  await Promise.all(backends.map((b) => b.start()))
  t.teardown(() => Promise.all(backends.map((b) => b.stop())))
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-session-limit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(
    path.join(dir, 'mxgate.ini'),
    '[backend_client]\nmax_sessions = 1\nsession_wait = 200ms\n[relay]\ndeadline = 2s\n[breaker]\nmin_volume = 3\n',
  )
  const m = await startMxgate({
    backends: backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','),
    args: ['--config', dir],
  })
  t.teardown(() => m.stop())

  const burst = 12
  const ids = Array.from({ length: burst }, (_, i) => `burst-${i}@session-limit.test`)
  const results = await Promise.all(
    ids.map((messageId) =>
      sendMessage({
        host: '127.0.0.1',
        port: m.port,
        from: 'sender@remote.test',
        to: ['user@example.com'],
        message: makeTestMessage({ messageId }),
        timeoutMs: 20_000,
      }),
    ),
  )
  t.ok(
    results.every((r) => r.code === 250),
    `every sender hears 250: ${results.map((r) => r.reply.split(' ').slice(0, 2).join(' ')).join(', ')}`,
  )
  const queued = results.filter((r) => /\(queued\)/.test(r.reply)).length
  t.ok(queued > 0, `the messages no session could take in time are spooled (${queued})`)
  const res = await fetch(`http://127.0.0.1:${m.adminPort}/api/backends`)
  const view = (await res.json()) as { backends: BackendView[] }
  for (const b of view.backends) {
    t.equal(b.state, 'admitted', `${b.id} stays admitted`)
    t.ok(b.successRatio === null || b.successRatio === 1, `${b.id} has no failed attempt (${b.successRatio})`)
  }
  const metrics = await (await fetch(`http://127.0.0.1:${m.adminPort}/metrics`)).text()
  t.match(metrics, /mxgate_backend_session_waits_total\{backend="mx[12]",result="saturated"\} [1-9]/)
})
