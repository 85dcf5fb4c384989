// The journal as the engine wires it (no Haraka): inline and spooled deliveries are journaled with the backend that
// took them, and a spooled message with an avoid list never goes to those backends.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { JournalOffError } from '../src/admin/types'
import { toWireForm } from '../src/backend/wire'
import type { InboundMessage } from '../src/message'
import { NodeAdmin } from '../src/node-admin'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'
import { eventually } from './helpers/spool-e2e'

const ALL = { since: 0, until: Number.MAX_SAFE_INTEGER }

function message(id: string, to = ['user@example.com']): InboundMessage {
  return {
    id: randomUUID(),
    envelope: { from: 'sender@remote.test', to },
    body: toWireForm(makeTestMessage({ messageId: id, to })),
    receivedAt: Date.now(),
  }
}

t.test('an inline delivery is journaled after the answer, with the backend that took it', async (t) => {
  const rig = await startRig([{}, {}])
  t.teardown(() => rig.close())
  const r = await rig.engine.accept(message('inline@test'))
  t.equal(r.outcome, 'relayed')
  const found = await rig.engine.journal.list({ backend: 'b1', ...ALL })
  t.same(
    found.map((e) => [e.line.messageId, e.rcpts]),
    [['<inline@test>', ['user@example.com']]],
  )
  t.same(await rig.engine.journal.list({ backend: 'b2', ...ALL }), [], 'b2 took nothing')
})

t.test('a message nobody took (451 to the sender, nothing spooled) is not journaled', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 no such user' }] }])
  t.teardown(() => rig.close())
  const r = await rig.engine.accept(message('refused@test'))
  t.equal(r.relay.outcome, 'rejected')
  t.same(await rig.engine.journal.list({ backend: 'b1', ...ALL }), [])
})

t.test('a spooled message is journaled when a backend takes it from the spool', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }], {
    tweak: (c) => {
      c.spool.retryFirstMs = 100
      c.spool.retryMaxMs = 200
    },
  })
  t.teardown(() => rig.close())
  const r = await rig.engine.accept(message('spooled@test'))
  t.equal(r.outcome, 'spooled')
  t.same(await rig.engine.journal.list({ backend: 'b1', ...ALL }), [], 'not journaled while only spooled')
  await rig.backends[0]!.setFaults([])
  t.ok(await eventually(() => rig.backends[0]!.received.length === 1, 10_000), 'delivered from the spool')
  t.ok(
    await eventually(async () => (await rig.engine.journal.list({ backend: 'b1', ...ALL })).length === 1, 5000),
    'and journaled with the backend that took it',
  )
})

t.test('the relay never picks a backend the message must avoid; the spool honours the avoid list', async (t) => {
  const rig = await startRig([{}, {}], { order: 'random' })
  t.teardown(() => rig.close())
  for (let i = 0; i < 20; i++) {
    const r = await rig.engine.relay.relay(message(`avoid-${i}@test`), undefined, ['b1'])
    t.equal(r.deliveries[0]?.backendId, 'b2')
  }
  t.equal(rig.backends[0]!.received.length, 0, 'b1 got none of 20')
  const alone = await rig.engine.relay.relay(message('only@test'), undefined, ['b1', 'b2'])
  t.equal(alone.outcome, 'deferred', 'with every backend avoided the message waits')

  const entry = await rig.engine.spool.write(message('replayed@test'), { avoid: ['b1'] })
  t.same(entry.avoid, ['b1'], 'the spool keeps the avoid list')
  rig.engine.runner.drain()
  t.ok(
    await eventually(() => rig.backends[1]!.received.some((m) => m.messageId === 'replayed@test'), 10_000),
    'the spooled message goes to b2',
  )
  t.notOk(
    rig.backends[0]!.received.some((m) => m.messageId === 'replayed@test'),
    'never to b1',
  )
})

t.test('with the journal off nothing is journaled, and listing or replaying says the journal is off', async (t) => {
  const rig = await startRig([{}], {
    tweak: (c) => {
      c.journal.enabled = false
    },
  })
  t.teardown(() => rig.close())
  t.equal((await rig.engine.accept(message('off@test'))).outcome, 'relayed')
  t.equal(rig.engine.journal.counters().written, 0)
  const admin = new NodeAdmin(rig.engine)
  await t.rejects(admin.journal.list('b1', 0, Date.now()), new JournalOffError())
  const actor = { by: 'test', from: '127.0.0.1' }
  await t.rejects(
    admin.journal.replay({ backend: 'b1', since: 0, until: Date.now(), dryRun: false, again: false }, actor),
    { code: 'EJOURNALOFF', message: /journal\.enabled = false/ },
  )
})
