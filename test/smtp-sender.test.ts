import { once } from 'node:events'
import net from 'node:net'
import t from 'tap'
import { FakeBackend, type FakeBackendOptions } from '../src/testing/fake-backend'
import { createRng } from '../src/testing/fault-rules'
import { makeTestMessage, sendMany, sendMessage, toWireFormat } from '../src/testing/smtp-sender'

async function startBackend(tt: tap.Test, opts: FakeBackendOptions = {}): Promise<FakeBackend> {
  const backend = new FakeBackend(opts)
  await backend.start()
  tt.teardown(() => backend.stop())
  return backend
}

t.test('toWireFormat: CRLF line endings, dot-stuffing, a final CRLF, 8-bit bytes kept', async (t) => {
  t.equal(toWireFormat('a\nb\r\nc').toString(), 'a\r\nb\r\nc\r\n', 'bare LF becomes CRLF, a final CRLF is added')
  t.equal(toWireFormat('.a\n..b\n.\nx.y\n').toString(), '..a\r\n...b\r\n..\r\nx.y\r\n', 'only line-start dots double')
  t.equal(toWireFormat('').length, 0, 'an empty message stays empty')
  const eight = Buffer.from([0xc3, 0xa9, 0x0a, 0xff, 0x0d, 0x0a])
  t.same([...toWireFormat(eight)], [0xc3, 0xa9, 0x0d, 0x0a, 0xff, 0x0d, 0x0a])
})

t.test('makeTestMessage: headers, a unique Message-ID, CRLF lines, exact padding', async (t) => {
  const m = makeTestMessage({ messageId: 'fixed@test', subject: 'hello', bodyLines: ['héllo'] })
  const text = m.toString('utf8')
  t.match(text, /^From: .*\r\nTo: .*\r\nSubject: hello\r\nDate: .*\r\nMessage-ID: <fixed@test>\r\n/)
  t.match(text, /\r\n\r\nhéllo\r\n$/)
  t.notMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'every line ends in CRLF')
  const a = makeTestMessage().toString()
  const b = makeTestMessage().toString()
  t.not(/Message-ID: (.*)/.exec(a)?.[1], /Message-ID: (.*)/.exec(b)?.[1], 'generated Message-IDs differ')
  const base = makeTestMessage({ messageId: 'p@test' }).length
  for (const size of [base + 1, base + 2, base + 3, base + 79, base + 80, 10_000, 100_000]) {
    const padded = makeTestMessage({ messageId: 'p@test', size })
    t.equal(padded.length, size, `padded to exactly ${size} bytes`)
    t.ok(padded.toString().endsWith('\r\n'), 'still ends in CRLF')
  }
  t.equal(makeTestMessage({ messageId: 'p@test', size: 10 }).length, base, 'a size below the minimum is ignored')
})

t.test('sendMessage delivers, reports stage, reply and per-recipient replies', async (t) => {
  const backend = await startBackend(t)
  const message = makeTestMessage({ messageId: 'deliver@test' })
  const r = await sendMessage({
    host: '127.0.0.1',
    port: backend.port,
    from: '',
    to: ['a@test', 'b@test'],
    message,
  })
  t.match(r, { ok: true, stage: 'dot', code: 250, reply: /^250 2\.0\.0 Ok: queued/ })
  t.same(
    r.rcptReplies.map((x) => [x.rcpt, x.code]),
    [
      ['a@test', 250],
      ['b@test', 250],
    ],
  )
  t.ok(r.latencyMs >= 0)
  t.equal(r.error, undefined)
  t.equal(backend.received[0]?.from, '', 'the null sender is sent as <>')
  t.ok(backend.received[0]?.raw.equals(message))
})

t.test('sendMessage never rejects: a closed port is ok:false with ECONNREFUSED', async (t) => {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  server.close()
  await once(server, 'close')
  const r = await sendMessage({ host: '127.0.0.1', port, from: 'a@t', to: ['b@t'], message: 'x' })
  t.match(r, { ok: false, stage: 'connect', code: null, reply: '', error: /ECONNREFUSED/ })
})

t.test('sendMessage times out at the stage where the server goes silent', async (t) => {
  const backend = await startBackend(t, { faults: [{ stage: 'mail', action: 'stall' }] })
  const r = await sendMessage({
    host: '127.0.0.1',
    port: backend.port,
    from: 'a@t',
    to: ['b@t'],
    message: 'x',
    timeoutMs: 200,
  })
  t.match(r, { ok: false, stage: 'mail', error: /no reply within 200 ms at mail/ })
  t.equal(r.code, 250, 'code and reply are the last reply seen (EHLO)')
})

t.test('sendMessage falls back to HELO when EHLO gets a 5xx', async (t) => {
  // Find a seed whose first draw fires the rule (EHLO refused) and whose second does not (HELO accepted).
  let seed = 0
  for (let s = 1; s < 1000; s++) {
    const rng = createRng(s)
    if (rng() < 0.5 && rng() >= 0.5) {
      seed = s
      break
    }
  }
  t.ok(seed > 0, 'found a seed')
  const backend = await startBackend(t, {
    seed,
    faults: [{ stage: 'ehlo', action: 'reply', reply: '502 5.5.1 EHLO not supported', probability: 0.5 }],
  })
  const r = await sendMessage({ host: '127.0.0.1', port: backend.port, from: 'a@t', to: ['b@t'], message: 'x' })
  t.ok(r.ok, 'delivered after HELO')
  t.equal(backend.counters.faultsInjected, 1)
})

t.test('sendMessage stops at MAIL or RCPT when they are refused, and says which reply stopped it', async (t) => {
  const mail = await startBackend(t, { faults: [{ stage: 'mail', action: 'reply', reply: '550 5.7.1 Go away' }] })
  const r1 = await sendMessage({ host: '127.0.0.1', port: mail.port, from: 'a@t', to: ['b@t'], message: 'x' })
  t.match(r1, { ok: false, stage: 'mail', code: 550, reply: '550 5.7.1 Go away' })
  t.same(r1.rcptReplies, [], 'no RCPT after a refused MAIL')

  const rcpt = await startBackend(t, { faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 Unknown' }] })
  for (const pipelining of [false, true]) {
    const r2 = await sendMessage({
      host: '127.0.0.1',
      port: rcpt.port,
      from: 'a@t',
      to: ['b@t', 'c@t'],
      message: 'x',
      pipelining,
    })
    t.match(r2, { ok: false, stage: 'rcpt', code: 550 }, `pipelining ${pipelining}: fails at rcpt`)
    t.equal(r2.rcptReplies.length, 2)
  }
  t.equal(rcpt.received.length, 0)
})

t.test('sendMany: bounded concurrency, results in index order, progress reported', async (t) => {
  const backend = await startBackend(t)
  const progress: number[] = []
  const results = await sendMany({
    target: { host: '127.0.0.1', port: backend.port },
    count: 20,
    concurrency: 4,
    make: (i) => ({ from: 's@t', to: [`r${i}@t`], message: makeTestMessage({ messageId: `many-${i}@test` }) }),
    timeoutMs: 5000,
    onProgress: (done) => progress.push(done),
  })
  t.equal(results.length, 20)
  t.ok(
    results.every((r) => r.ok),
    'all delivered',
  )
  t.same(
    progress,
    Array.from({ length: 20 }, (_, i) => i + 1),
  )
  const ids = new Set(backend.received.map((m) => m.messageId))
  t.equal(ids.size, 20, 'twenty distinct messages arrived')
  t.same(
    results.map((r) => r.rcptReplies[0]?.rcpt),
    Array.from({ length: 20 }, (_, i) => `r${i}@t`),
    'result i belongs to message i',
  )
})

t.test('sendMany stops starting messages after its time limit', async (t) => {
  const backend = await startBackend(t)
  const results = await sendMany({
    target: { host: '127.0.0.1', port: backend.port },
    count: 5,
    concurrency: 1,
    make: () => ({ from: 's@t', to: ['r@t'], message: 'x' }),
    timeLimitMs: -1,
  })
  t.equal(results.length, 5)
  t.ok(
    results.every((r) => !r.ok && /time limit/.test(r.error ?? '')),
    'each says it was not sent',
  )
  t.equal(backend.counters.connections, 0)
})
