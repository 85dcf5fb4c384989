// The relay engine over real sockets: failover, classification, breaker ejection and recovery, second opinion.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { toWireForm } from '../src/backend/wire'
import type { HealthState } from '../src/health/registry'
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

t.test('a recipient 5.1.1 goes back to the sender with no penalty for the backend', async (t) => {
  const rig = await startRig([
    { faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' }] },
    {},
  ])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com']).msg)
  t.equal(result.outcome, 'rejected')
  if (result.outcome !== 'rejected') return
  t.equal(result.reply.code, 550)
  t.equal(result.reply.enhanced, '5.1.1')
  t.equal(result.attempts.length, 1, 'no failover for a message fault')
  t.equal(rig.engine.health.status('b1').window.faults, 0)
})

t.test('a partly refused message goes on for the accepted recipients; refusals are recorded', async (t) => {
  const rig = await startRig([
    { faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' }] },
  ])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message(['nobody@example.com', 'user@example.com']).msg)
  t.equal(result.outcome, 'delivered')
  t.same(rig.backends[0]!.received[0]!.to, ['user@example.com'])
  t.same(
    result.refused.map((r) => [r.rcpt, r.reply.code]),
    [['nobody@example.com', 550]],
  )
})

t.test('a content 5xx at end of data is the message’s: passed back, no failover', async (t) => {
  const rig = await startRig([
    { faults: [{ stage: 'dot', action: 'reply', reply: '554 5.6.0 Message content rejected' }] },
    {},
  ])
  t.teardown(() => rig.close())
  const result = await rig.engine.relay.relay(message().msg)
  t.equal(result.outcome, 'rejected')
  t.equal(rig.backends[1]!.received.length, 0)
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

t.test(
  'all recipients refused at RCPT, one for the backend’s reasons: that one fails over, the 5.1.1 one is settled',
  async (t) => {
    const rig = await startRig([
      {
        faults: [
          { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' },
          { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 Lookup failure', rcpt: 'user' },
        ],
      },
      {},
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
