// The relay engine over real sockets: failover, classification, breaker ejection and recovery, second opinion.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { DeliveryAttempt } from '../src/backend/outcome'
import { toWireForm } from '../src/backend/wire'
import type { EjectionEvidence, HealthState } from '../src/health/registry'
import type { InboundMessage } from '../src/message'
import type { FakeBackendOptions } from '../src/testing/fake-backend'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'
import { waitFor } from './helpers/ports'

function message(to: string[] = ['user@example.com'], raw?: Buffer): { msg: InboundMessage; raw: Buffer } {
  const r = raw ?? makeTestMessage({ to })
  return {
    raw: r,
    msg: {
      id: randomUUID(),
      envelope: { from: 'sender@remote.test', to },
      body: toWireForm(r),
      receivedAt: Date.now(),
    },
  }
}

t.test('forwards a message byte for byte to a healthy backend', async (t) => {
  const rig = await startRig([{}])
  t.teardown(() => rig.close())
  const raw = Buffer.concat([
    Buffer.from('Subject: dots and bytes\r\nMessage-ID: <bytes@test>\r\n\r\n'),
    Buffer.from('.leading dot\r\n..two dots\r\n.\r\n'),
    Buffer.from([0xc3, 0xa9, 0xff, 0x80, 0x0d, 0x0a]),
    Buffer.from(`${'x'.repeat(2000)}\r\nlast line without newline`),
  ])
  const { msg } = message(['user@example.com'], raw)
  const result = await rig.engine.relay.relay(msg)
  t.equal(result.outcome, 'delivered')
  const got = rig.backends[0]!.received[0]!
  t.same(got.to, ['user@example.com'])
  t.equal(got.from, 'sender@remote.test')
  // The client terminates the last line with CRLF before the dot, as SMTP requires.
  t.ok(got.raw.equals(Buffer.concat([raw, Buffer.from('\r\n')])), 'bytes identical')
})

const faults = [
  { name: 'refused connection', rule: { stage: 'connect', action: 'refuse' } },
  { name: 'reset at connect', rule: { stage: 'connect', action: 'reset' } },
  { name: '421 at banner', rule: { stage: 'banner', action: 'reply', reply: '421 4.3.2 Service not available' } },
  { name: 'stall at MAIL (timeout)', rule: { stage: 'mail', action: 'stall' } },
  { name: '451 4.3.0 at end of data', rule: { stage: 'dot', action: 'reply', reply: '451 4.3.0 Local error' } },
  { name: '452 4.3.1 at RCPT', rule: { stage: 'rcpt', action: 'reply', reply: '452 4.3.1 Insufficient storage' } },
  { name: 'drop after the final dot', rule: { stage: 'dot', action: 'drop' } },
  { name: '554 5.3.0 at DATA', rule: { stage: 'data', action: 'reply', reply: '554 5.3.0 Broken' } },
] as const

for (const f of faults) {
  t.test(`fails over on ${f.name}`, async (t) => {
    const rig = await startRig([{ faults: [f.rule] }, {}])
    t.teardown(() => rig.close())
    const { msg } = message()
    const result = await rig.engine.relay.relay(msg)
    t.equal(result.outcome, 'delivered')
    t.same(
      result.attempts.map((a) => [a.backendId, a.verdict]),
      [
        ['b1', 'backend'],
        ['b2', 'delivered'],
      ],
    )
    t.equal(rig.backends[1]!.received.length, 1, 'the healthy backend has it')
    t.equal(rig.backends[0]!.received.length, 0, 'the broken one does not')
    t.equal(rig.engine.health.status('b1').window.faults, 1, 'the fault is charged to b1')
  })
}

t.test('defers with a reason when no backend takes the message', async (t) => {
  const rig = await startRig([
    { faults: [{ stage: 'connect', action: 'refuse' }] },
    { faults: [{ stage: 'dot', action: 'reply', reply: '451 4.3.0 nope' }] },
  ])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'deferred')
  if (result.outcome !== 'deferred') return
  t.same(result.pending, ['user@example.com'])
  t.match(result.reason, /b2: .*451 4\.3\.0/)
  t.equal(result.attempts.length, 2, 'each backend once, never the same one twice')
})

t.test('never tries more backends than max_attempts', async (t) => {
  const refuse: FakeBackendOptions = { faults: [{ stage: 'connect', action: 'refuse' }] }
  const rig = await startRig([refuse, refuse, refuse, {}], {
    tweak: (c) => {
      c.relay.maxAttempts = 2
    },
  })
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'deferred')
  t.equal(result.attempts.length, 2)
})

t.test('stops at the deadline even when backends stall', async (t) => {
  const stall: FakeBackendOptions = { faults: [{ stage: 'dot', action: 'stall' }] }
  const rig = await startRig([stall, stall, stall], {
    tweak: (c) => {
      c.relay.deadlineMs = 1200
      c.client.timeouts.dot = 5000
    },
  })
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'deferred')
  // Said by the session itself, not measured: a loaded machine stretches wall time, not the reason a wait ended.
  t.match(
    result.attempts.at(-1)?.detail,
    /bounded by the delivery deadline/,
    'bounded by the message deadline, not the stage timeout',
  )
})

const noSuchUser = { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' } as const

t.test('a recipient 5.1.1 confirmed by a second backend goes back to the sender, no penalty', async (t) => {
  const rig = await startRig([{ faults: [noSuchUser] }, { faults: [noSuchUser] }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  if (result.outcome !== 'rejected') return
  t.equal(result.reply.code, 550)
  t.equal(result.reply.enhanced, '5.1.1')
  t.equal(result.attempts.length, 2, 'asked twice (relay.confirm_permanent)')
  t.equal(rig.engine.health.status('b1').window.faults, 0)
  t.same(rig.engine.store.pooledOutcomes('b1', 60_000), { ok: 1, fail: 0, refused: 1 }, 'counted as a refusal')
})

t.test('a 5.1.1 that another backend accepts is the first backend’s fault, never the sender’s', async (t) => {
  const rig = await startRig([{ faults: [noSuchUser] }, {}])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(result.refused, [])
  t.equal(rig.backends[1]!.received.length, 1)
  t.ok(await waitFor(() => rig.engine.health.status('b1').window.faults === 1), 'b1 charged a fault')
  t.same(rig.engine.store.pooledOutcomes('b1', 60_000), { ok: 0, fail: 1, refused: 1 }, 'the shared counts say so')
})

t.test('confirm_permanent = none passes a 5.1.1 straight back, unless the backend is suspect', async (t) => {
  const rig = await startRig([{ faults: [noSuchUser] }, {}], {
    tweak: (c) => {
      c.relay.confirmPermanent = []
    },
  })
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  t.equal(result.attempts.length, 1)
  // A backend in probation is suspect: its word is not enough, whatever the switch says.
  await rig.engine.health.eject('b1', 'test', null, 'test')
  await rig.engine.health.restore('b1', 'test')
  t.equal(rig.engine.health.status('b1').state, 'probation')
  t.ok(rig.engine.health.suspect('b1'))
  const again = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(again.outcome, 'delivered', 'b2 took it')
})

t.test('a suspect backend does not confirm a refusal; when a third accepts, both refusers are charged', async (t) => {
  const rig = await startRig([{ faults: [noSuchUser] }, { faults: [noSuchUser] }, {}])
  t.teardown(() => rig.close())
  await rig.engine.health.eject('b2', 'test', null, 'test')
  await rig.engine.health.restore('b2', 'test') // probation: suspect
  const result = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(
    result.attempts.map((a) => a.backendId),
    ['b1', 'b2', 'b3'],
  )
  t.ok(await waitFor(() => rig.engine.health.status('b1').window.faults === 1), 'b1 charged')
  t.ok(await waitFor(() => rig.engine.health.status('b2').window.faults === 1), 'b2 charged')
  t.same(rig.engine.store.pooledOutcomes('b2', 60_000), { ok: 0, fail: 1, refused: 1 })
})

t.test('an ambiguous refusal is counted once its second opinion is in', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.7.1 Relaying denied' }] }, {}])
  t.teardown(() => rig.close())
  await rig.engine.relay.relay(message().msg)
  t.same(rig.engine.store.pooledOutcomes('b1', 60_000), { ok: 0, fail: 1, refused: 0 }, 'a fault, not a success')
  t.same(rig.engine.store.pooledOutcomes('b2', 60_000), { ok: 1, fail: 0, refused: 0 })
})

t.test('a delivery with some recipients refused for the backend’s reasons counts as a fault', async (t) => {
  const rig = await startRig([
    { faults: [{ stage: 'rcpt', action: 'reply', reply: '451 4.3.0 Lookup failure', rcpt: 'other' }] },
    {},
  ])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['user@example.com', 'other@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(rig.engine.store.pooledOutcomes('b1', 60_000), { ok: 0, fail: 1, refused: 0 })
  t.same(rig.engine.store.pooledOutcomes('b2', 60_000), { ok: 1, fail: 0, refused: 0 })
})

t.test('a partly refused message goes on for the accepted recipients; refusals are recorded', async (t) => {
  const rig = await startRig([{ faults: [noSuchUser] }, { faults: [noSuchUser] }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com', 'user@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(rig.backends[0]!.received[0]!.to, ['user@example.com'])
  t.same(
    result.refused.map((r) => [r.rcpt, r.reply.code]),
    [['nobody@example.com', 550]],
  )
})

t.test('a content 5xx at end of data is the message’s once a second backend says the same', async (t) => {
  const content = { stage: 'dot', action: 'reply', reply: '554 5.6.0 Message content rejected' } as const
  const rig = await startRig([{ faults: [content] }, { faults: [content] }, {}])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'rejected')
  t.equal(result.attempts.length, 2)
  t.equal(rig.backends[2]!.received.length, 0, 'no third try')
})

t.test('a temporary per-message refusal (4.2.2 mailbox full) is deferred, not failed over', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'rcpt', action: 'reply', reply: '452 4.2.2 Mailbox full' }] }, {}])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'deferred')
  if (result.outcome !== 'deferred') return
  t.equal(result.reply?.code, 452)
  t.equal(rig.engine.health.status('b1').window.faults, 0)
})

t.test('second opinion: an ambiguous 5.7.1 that another backend accepts is charged to the first', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.7.1 Relaying denied' }] }, {}])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'delivered')
  t.same(
    result.attempts.map((a) => [a.backendId, a.verdict]),
    [
      ['b1', 'ambiguous'],
      ['b2', 'delivered'],
    ],
  )
  t.ok(await waitFor(() => rig.engine.health.status('b1').window.faults === 1), 'b1 charged a fault')
})

t.test('second opinion: when both backends refuse the same way, the refusal is the message’s', async (t) => {
  const rule = { stage: 'dot', action: 'reply', reply: '550 5.7.1 Policy rejection' } as const
  const rig = await startRig([{ faults: [rule] }, { faults: [rule] }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'rejected')
  if (result.outcome !== 'rejected') return
  t.equal(result.reply.enhanced, '5.7.1')
  t.equal(rig.engine.health.status('b1').window.faults, 0)
  t.equal(rig.engine.health.status('b2').window.faults, 0)
})

t.test('second opinion off: an ambiguous 5xx goes straight back to the sender', async (t) => {
  const rig = await startRig(
    [{ faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.7.1 Relaying denied' }] }, {}],
    {
      tweak: (c) => {
        c.relay.secondOpinion = false
      },
    },
  )
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'rejected')
  t.equal(result.attempts.length, 1)
})

t.test('the breaker ejects a failing backend, probes it, and re-admits it after a trial', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }, {}], {
    tweak: (c) => {
      c.breaker.minVolume = 4
      c.breaker.errorThresholdPercent = 50
      c.breaker.ejectionMs = 400
    },
  })
  t.teardown(() => rig.close())
  const states: HealthState[] = []
  rig.engine.health.on('state', (s: { id: string; state: HealthState }) => {
    if (s.id === 'b1') states.push(s.state)
  })
  for (let i = 0; i < 4; i++) await rig.engine.relay.relay(message().msg)
  t.equal(rig.engine.health.status('b1').state, 'ejected', 'ejected after min_volume failures')
  t.match(rig.engine.health.status('b1').reason, /4 of 4 attempts failed \(100%\).*ECONNREFUSED/)

  // While ejected, mail goes straight to the healthy backend.
  const during = await rig.engine.relay.relay(message().msg)
  t.same(
    during.attempts.map((a) => a.backendId),
    ['b2'],
  )

  // Still broken at the first probe: ejected again, for longer.
  t.ok(await waitFor(() => states.filter((s) => s === 'ejected').length >= 2, 4000), 'probe failed, ejected again')
  // From the state's own start, not from whenever this poll saw it (a loaded machine may see it late).
  const second = rig.engine.health.status('b1')
  t.ok(second.until! - second.since > 500, `second ejection lasts longer (${second.until! - second.since} ms)`)

  await rig.backends[0]!.setFaults([])
  t.ok(await waitFor(() => rig.engine.health.status('b1').state === 'trial', 5000), 'probe passes → trial')
  const trial = await rig.engine.relay.relay(message().msg)
  t.same(
    trial.attempts.map((a) => [a.backendId, a.verdict]),
    [['b1', 'delivered']],
    'one trial message goes to the recovering backend',
  )
  t.ok(await waitFor(() => rig.engine.health.status('b1').state === 'admitted', 3000), 'probation → admitted')
  t.same(states.slice(0, 2), ['ejected', 'probing'])
  t.ok(states.includes('trial') && states.includes('probation'))
})

t.test('a backend that fails only a few messages stays admitted by the breaker (the detector’s job)', async (t) => {
  const rig = await startRig(
    [{ seed: 7, faults: [{ stage: 'dot', action: 'reply', reply: '451 4.3.0 flaky', probability: 0.1 }] }, {}],
    {
      tweak: (c) => {
        c.breaker.minVolume = 5
      },
    },
  )
  t.teardown(() => rig.close())
  const results = []
  for (let i = 0; i < 40; i++) results.push(await rig.engine.relay.relay(message().msg))
  t.equal(results.filter((r) => r.outcome === 'delivered').length, 40, 'every message delivered via failover')
  t.equal(rig.engine.health.status('b1').state, 'admitted')
})

t.test('a non-ASCII address goes to a backend that offers SMTPUTF8, charging no one', async (t) => {
  const rig = await startRig([{ smtputf8: false }, {}])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['josé@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(
    result.attempts.map((a) => [a.backendId, a.verdict]),
    [
      ['b1', 'unsupported'],
      ['b2', 'delivered'],
    ],
  )
  t.equal(rig.engine.health.status('b1').window.faults, 0, 'b1 is not charged')
})

t.test('a non-ASCII address that no backend can take is refused with 553 5.6.7', async (t) => {
  const rig = await startRig([{ smtputf8: false }, { smtputf8: false }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['josé@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  if (result.outcome !== 'rejected') return
  t.equal(result.reply.code, 553)
  t.equal(result.reply.enhanced, '5.6.7')
})

t.test('a non-ASCII address whose only SMTPUTF8 backend is out is deferred (spooled), not refused', async (t) => {
  const rig = await startRig([{ smtputf8: false }, {}])
  t.teardown(() => rig.close())
  const first = await rig.engine.relay.relay(message(['josé@example.com']).msg)
  t.equal(first.outcome, 'delivered', 'b2 takes it while admitted')

  for (const [what, takeOut] of [
    ['draining', () => rig.engine.health.drain('b2', 'maintenance', 'ops')],
    ['ejected', () => rig.engine.health.eject('b2', 'disk swap', null, 'ops')],
  ] as const) {
    await takeOut()
    const live = await rig.engine.relay.relay(message(['josé@example.com']).msg)
    t.equal(live.outcome, 'deferred', `${what}: deferred, not 553`)
    t.equal(live.refused.length, 0)
    const accepted = await rig.engine.accept(message(['josé@example.com']).msg)
    t.equal(accepted.outcome, 'spooled', `${what}: the sender hears 250 once it is spooled`)
    await rig.engine.health.restore('b2', 'ops')
  }
  t.equal(rig.engine.health.status('b1').window.faults, 0, 'b1 is never charged')
})

t.test(
  'a non-ASCII address while its only SMTPUTF8 backend recovers: taken when b2 may take it, else deferred',
  async (t) => {
    const rig = await startRig([{ smtputf8: false }, {}], {
      tweak: (c) => {
        c.breaker.slowStartMs = 60_000 // probation outlasts the test
        // A probe that meets a silent banner keeps b2 probing until the rig closes.
        c.client.timeouts.banner = 60_000
        c.breaker.probeTimeoutMs = 60_000
      },
    })
    t.teardown(() => rig.close())
    const { health } = rig.engine
    const b2 = rig.backends[1]!
    const josé = async () => rig.engine.relay.relay(message(['josé@example.com']).msg)
    const path = (r: { attempts: { backendId: string; verdict: string }[] }) =>
      r.attempts.map((a) => [a.backendId, a.verdict])
    const evidence: EjectionEvidence = {
      signal: 'fault',
      faults: 1,
      messages: 1,
      rate: 1,
      poolRate: 0,
      statistic: 1,
      threshold: 1,
      firstFaultAt: Date.now(),
    }
    const ejectAndProbe = async (until: HealthState) => {
      t.ok(health.ejectByDetector('b2', 'detector', 'test ejection', evidence), 'the detector ejects b2')
      t.ok(await waitFor(() => health.status('b2').state === until, 10_000), `then b2 is in ${until}`)
    }
    t.equal((await josé()).outcome, 'delivered', 'b2 takes it while admitted')

    // Probation: back in rotation at a share of its weight. The pool may pick it, and it can take the envelope.
    await health.eject('b2', 'disk swap', null, 'ops')
    await health.restore('b2', 'ops')
    t.equal(health.status('b2').state, 'probation')
    const inProbation = await josé()
    t.equal(inProbation.outcome, 'delivered', 'probation: delivered')
    t.same(path(inProbation), [
      ['b1', 'unsupported'],
      ['b2', 'delivered'],
    ])

    // Trial: its probe passed and it takes one message. While another one is on its way there, nothing else goes.
    await ejectAndProbe('trial')
    let trialDone: (a: DeliveryAttempt) => void = () => {}
    const held = health.track(
      'b2',
      () => new Promise<DeliveryAttempt>((r) => (trialDone = r)),
      () => null,
    )
    t.equal(health.admission('b2').allowed, false, 'its trial message is in flight')
    const behindTrial = await josé()
    t.equal(behindTrial.outcome, 'deferred', 'trial with its message in flight: deferred, not 553')
    t.same(path(behindTrial), [['b1', 'unsupported']])
    t.equal(behindTrial.refused.length, 0)
    trialDone({
      backendId: 'b2',
      ok: true,
      accepted: ['user@example.com'],
      refused: [],
      dotReply: { code: 250, enhanced: '2.0.0', lines: ['Ok'] },
      failure: null,
      elapsedMs: 1,
      reusedSession: false,
    })
    await held
    t.equal(health.status('b2').state, 'probation', 'that trial message went through')

    // Trial again, and this time the non-ASCII message is the trial message.
    await ejectAndProbe('trial')
    const onTrial = await josé()
    t.equal(onTrial.outcome, 'delivered', 'trial: delivered, as its trial message')
    t.same(path(onTrial), [
      ['b1', 'unsupported'],
      ['b2', 'delivered'],
    ])
    t.equal(health.status('b2').state, 'probation', 'the trial passed')

    // Probing: out of rotation until its probe answers (here it never does).
    await b2.setFaults([{ stage: 'banner', action: 'stall' }])
    await ejectAndProbe('probing')
    const since = health.status('b2').since
    const whileProbing = await josé()
    t.equal(whileProbing.outcome, 'deferred', 'probing: deferred, not 553')
    t.same(path(whileProbing), [['b1', 'unsupported']])
    t.equal(whileProbing.refused.length, 0)
    const accepted = await rig.engine.accept(message(['josé@example.com']).msg)
    t.equal(accepted.outcome, 'spooled', 'probing: the sender hears 250 once it is spooled')
    t.match(health.status('b2'), { state: 'probing', since }, 'b2 was probing all along')
    t.equal(health.status('b1').window.faults, 0, 'b1 is never charged')
  },
)

t.test('a spooled non-ASCII message is retried, not bounced, while its only SMTPUTF8 backend is out', async (t) => {
  const rig = await startRig([{ smtputf8: false }, {}])
  t.teardown(() => rig.close())
  t.equal((await rig.engine.relay.relay(message(['josé@example.com']).msg)).outcome, 'delivered', 'b2 offers it')
  await rig.engine.health.drain('b2', 'maintenance', 'ops')
  const spool = rig.engine.spool
  const entry = await spool.write(message(['josé@example.com']).msg, { attempts: 1, nextAttemptAt: Date.now() })
  await rig.engine.runner.flush(entry.id)
  t.ok(await waitFor(() => (spool.get(entry.id)?.attempts ?? 0) >= 2, 5000), 'the spool retried it')
  t.same(spool.get(entry.id)?.pending, ['josé@example.com'], 'still pending')
  t.same(spool.get(entry.id)?.bounced, [], 'no DSN owed')

  await rig.engine.health.restore('b2', 'ops')
  await rig.engine.runner.flush(entry.id)
  t.ok(await waitFor(() => spool.get(entry.id) === undefined, 5000), 'delivered once b2 is back')
  t.equal(rig.backends[1]!.received.length, 2)
})

t.test('an IDN domain goes to a backend without SMTPUTF8 as A-labels: nothing unsupported', async (t) => {
  const rig = await startRig([{ smtputf8: false }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['user@bücher.example']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(rig.backends[0]!.received[0]?.to, ['user@xn--bcher-kva.example'])
  t.same(result.deliveries[0]?.recipients, ['user@bücher.example'], 'the relay speaks of the address as given')
})

t.test(
  'all recipients refused at RCPT, one for the backend’s reasons: that one fails over, the 5.1.1 one is settled',
  async (t) => {
    const rig = await startRig([
      {
        faults: [noSuchUser, { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 Lookup failure', rcpt: 'user' }],
      },
      { faults: [noSuchUser] },
    ])
    t.teardown(() => rig.close())
    const result = await rig.engine.relay.relay(message(['nobody@example.com', 'user@example.com']).msg)
    t.equal(result.outcome, 'delivered')
    t.same(rig.backends[1]!.received[0]?.to, ['user@example.com'], 'only the retryable recipient went to b2')
    t.same(
      result.refused.map((r) => [r.rcpt, r.reply.enhanced]),
      [['nobody@example.com', '5.1.1']],
    )
  },
)

t.test('every recipient refused for good at RCPT: each keeps its own reply', async (t) => {
  // Both backends refuse alike: 5.1.1 and 5.2.2 are confirmed by a second backend before anyone hears them.
  const rules = [
    { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' },
    { stage: 'rcpt', action: 'reply', reply: '552 5.2.2 Mailbox full', rcpt: 'full' },
  ] as const
  const rig = await startRig([{ faults: [...rules] }, { faults: [...rules] }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com', 'full@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  t.same(
    result.refused.map((r) => [r.rcpt, r.reply.enhanced]),
    [
      ['nobody@example.com', '5.1.1'],
      ['full@example.com', '5.2.2'],
    ],
  )
})

t.test('every recipient refused ambiguously, confirmed by a second backend: each keeps its own reply', async (t) => {
  const rules = [
    { stage: 'rcpt', action: 'reply', reply: '550 5.7.1 Sender policy', rcpt: 'alice' },
    { stage: 'rcpt', action: 'reply', reply: '550 5.7.9 Other policy', rcpt: 'bob' },
  ] as const
  const rig = await startRig([{ faults: [...rules] }, { faults: [...rules] }])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['alice@example.com', 'bob@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  t.same(
    result.refused.map((r) => [r.rcpt, r.reply.enhanced]),
    [
      ['alice@example.com', '5.7.1'],
      ['bob@example.com', '5.7.9'],
    ],
  )
})
