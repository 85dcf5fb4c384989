// mxgate as operators run it: a real process with Haraka listening, real fake backends, a real SMTP client.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { type MxgateProcess, startMxgate } from './helpers/mxgate-process'
import { waitFor } from './helpers/ports'

async function backend(t: Test, opts: ConstructorParameters<typeof FakeBackend>[0] = {}): Promise<FakeBackend> {
  const b = new FakeBackend(opts)
  await b.start()
  t.teardown(() => b.stop())
  return b
}

async function mxgate(t: Test, backends: FakeBackend[], env: Record<string, string> = {}): Promise<MxgateProcess> {
  const m = await startMxgate({ backends: backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','), env })
  t.teardown(() => m.stop())
  return m
}

const send = (m: MxgateProcess, to: string[], message: Buffer, from = 'sender@remote.test') =>
  sendMessage({ host: '127.0.0.1', port: m.port, from, to, message, timeoutMs: 20_000 })

t.test('relays a message byte for byte, adding one Received header', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1])
  const raw = Buffer.concat([
    Buffer.from('Message-ID: <e2e-bytes@test>\r\nSubject: bytes\r\n\r\n.dot line\r\n..\r\n'),
    Buffer.from([0xe2, 0x82, 0xac, 0x0d, 0x0a]),
    Buffer.from(`${'y'.repeat(3000)}\r\nend\r\n`),
  ])
  const r = await send(m, ['user@example.com'], raw)
  t.equal(r.ok, true, r.reply)
  t.match(r.reply, /^250 2\.0\.0 Message accepted/)
  const got = b1.received[0]!
  const text = got.raw.toString('latin1')
  t.match(
    text,
    /^Received: from sender\.mxgate\.test \(127\.0\.0\.1 \[127\.0\.0\.1\]\)\r\n\tby mxgate\.localdomain \(mxgate\) with ESMTP id /,
  )
  const afterReceived = got.raw.subarray(got.raw.indexOf('Message-ID:'))
  t.ok(afterReceived.equals(raw), 'the sender’s bytes follow unchanged')
  t.equal((text.match(/^Received:/gm) ?? []).length, 1)
})

t.test('refuses recipients outside our domains with 550 5.7.1 (never an open relay)', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1])
  const r = await send(m, ['victim@elsewhere.test'], makeTestMessage())
  t.equal(r.ok, false)
  t.equal(r.stage, 'rcpt')
  t.match(r.rcptReplies[0]?.reply, /^550 5\.7\.1 <victim@elsewhere\.test>: relay access denied/)
  const mixed = await send(m, ['victim@elsewhere.test', 'user@EXAMPLE.com'], makeTestMessage())
  t.equal(mixed.ok, true, 'the local recipient still gets the message')
  t.same(b1.received.at(-1)?.to, ['user@EXAMPLE.com'])
})

t.test('answers 451 4.4.1 when no backend takes the message', async (t) => {
  const b1 = await backend(t, { id: 'mx1', faults: [{ stage: 'connect', action: 'refuse' }] })
  const m = await mxgate(t, [b1])
  const r = await send(m, ['user@example.com'], makeTestMessage())
  t.equal(r.ok, false)
  t.equal(r.stage, 'dot')
  t.match(r.reply, /^451 4\.4\.1 No mail server accepted this message \(1 tried\)/)
  t.ok(await waitFor(() => m.logs.some((l) => l.msg === 'deferred' && /ECONNREFUSED/.test(String(l.reason)))))
})

t.test('passes a backend’s permanent refusal back with its own code', async (t) => {
  const b1 = await backend(t, {
    id: 'mx1',
    faults: [{ stage: 'dot', action: 'reply', reply: '554 5.6.0 Content rejected' }],
  })
  const m = await mxgate(t, [b1], { MXGATE_WORKERS: '0' })
  const r = await send(m, ['user@example.com'], makeTestMessage())
  t.match(r.reply, /^554 5\.6\.0 Content rejected/)
})

t.test('passes a temporary recipient refusal back as 4xx', async (t) => {
  const b1 = await backend(t, {
    id: 'mx1',
    faults: [{ stage: 'rcpt', action: 'reply', reply: '452 4.2.2 Mailbox full' }],
  })
  const m = await mxgate(t, [b1])
  const r = await send(m, ['user@example.com'], makeTestMessage())
  t.match(r.reply, /^452 4\.2\.2 Mailbox full/)
})

t.test('fails over, ejects the broken backend with its reason, and reuses backend sessions', async (t) => {
  const bad = await backend(t, {
    id: 'bad',
    faults: [{ stage: 'banner', action: 'reply', reply: '421 4.3.2 Go away' }],
  })
  const good = await backend(t, { id: 'good' })
  const m = await mxgate(t, [bad, good])
  for (let i = 0; i < 20; i++) {
    const r = await send(m, ['user@example.com'], makeTestMessage())
    t.equal(r.ok, true, `message ${i} accepted`)
  }
  t.equal(good.received.length, 20, 'all 20 delivered by the healthy backend')
  t.ok(good.counters.connections < 20, `sessions reused (${good.counters.connections} connections for 20 messages)`)
  const ejected = m.logs.find((l) => l.to === 'ejected' && l.backend === 'bad')
  t.ok(ejected, 'ejection logged')
  t.match(String(ejected?.reason), /attempts failed.*421 4\.3\.2/)
})

t.test('runs with worker processes (one per core)', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1], { MXGATE_WORKERS: '2' })
  for (let i = 0; i < 5; i++) {
    const r = await send(m, ['user@example.com'], makeTestMessage())
    t.equal(r.ok, true, r.reply)
  }
  t.equal(b1.received.length, 5)
  t.equal(await m.stop(), 0, 'master stops its workers and exits cleanly')
})
