// What a sender hears after DATA when the backend refused every recipient: through a real mxgate process (Haraka
// listening) to a real fake backend. SMTP has one reply for the whole message (RFC 5321 §3.3; per-recipient replies
// after DATA exist only in LMTP, RFC 2033), so that one reply must not tell one recipient's story for all of them.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { startMxgate } from './helpers/mxgate-process'

async function backend(t: Test): Promise<FakeBackend> {
  const b = new FakeBackend({
    id: 'mx1',
    faults: [
      { stage: 'rcpt', action: 'reply', rcpt: 'alice', reply: '550 5.1.1 <alice@example.com>: User unknown' },
      { stage: 'rcpt', action: 'reply', rcpt: 'bob', reply: '552 5.2.2 <bob@example.com>: Mailbox full' },
      { stage: 'rcpt', action: 'reply', rcpt: 'carol', reply: '550 5.1.1 User unknown' },
      { stage: 'rcpt', action: 'reply', rcpt: 'dave', reply: '550 5.1.1 User unknown' },
    ],
  })
  await b.start()
  t.teardown(() => b.stop())
  return b
}

t.test('every recipient refused: one reply that does not misinform about any of them', async (t) => {
  const b1 = await backend(t)
  // Without recipient verification, which would refuse alice, carol and dave at RCPT: this is the reply after DATA
  // that mail taken unchecked still meets (verification off, an opted-out domain, a check nobody answered in time).
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b1.port}`, env: { MXGATE_VERIFY: 'off' } })
  t.teardown(() => m.stop())
  const send = (to: string[]) =>
    sendMessage({
      host: '127.0.0.1',
      port: m.port,
      from: 's@remote.test',
      to,
      message: makeTestMessage(),
      timeoutMs: 20_000,
    })

  t.test('refused for different reasons: a multi-line 554 naming each recipient with its own reply', async (t) => {
    const r = await send(['alice@example.com', 'bob@example.com'])
    t.equal(r.ok, false)
    t.equal(r.stage, 'dot')
    t.equal(r.code, 554)
    const lines = r.reply.split('\n')
    t.equal(lines.length, 3, r.reply)
    t.match(lines[0], /^554-5\.0\.0 Every recipient was refused, each for its own reason/)
    t.match(lines[1], /^554-5\.0\.0 <alice@example\.com>: 550 5\.1\.1 <alice@example\.com>: User unknown$/)
    t.match(lines[2], /^554 5\.0\.0 <bob@example\.com>: 552 5\.2\.2 <bob@example\.com>: Mailbox full/)
    t.equal(b1.received.length, 0)
  })

  t.test('refused alike: the backend’s own reply, as a proxy would pass it', async (t) => {
    const r = await send(['carol@example.com', 'dave@example.com'])
    t.equal(r.code, 550)
    t.match(r.reply, /^550 5\.1\.1 User unknown/)
    t.equal(r.reply.split('\n').length, 1)
  })

  t.test('one recipient: its own reply, unchanged', async (t) => {
    const r = await send(['bob@example.com'])
    t.match(r.reply, /^552 5\.2\.2 <bob@example\.com>: Mailbox full/)
  })
})
