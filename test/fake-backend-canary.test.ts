// The fake backend's canary modes: accept and lose a share of messages; forward kept canaries back (SMTP, webhook).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { canaryBody } from '../src/canary/message'
import { newToken } from '../src/canary/tokens'
import { parseFakeBackendArgs } from '../src/cli/fake-backend-cmd'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { eventually } from './helpers/spool-e2e'

const canary = (token: string) =>
  canaryBody({ token, backendId: 'mx1', to: 'canary@example.com', hostname: 'mx.test', now: new Date(0) })

t.test('discardShare 1: every message gets 250 and is thrown away', async (t) => {
  const b = new FakeBackend({ id: 'loser', discardShare: 1 })
  await b.start()
  t.teardown(() => b.stop())
  const r = await sendMessage({
    host: '127.0.0.1',
    port: b.port,
    from: 'a@x.test',
    to: ['b@example.com'],
    message: makeTestMessage(),
  })
  t.equal(r.ok, true, 'the sender hears 250')
  t.equal(b.received.length, 0)
  t.equal(b.discarded.length, 1)
  t.match(b.counters, { messages: 1, discarded: 1 })
})

t.test('a seeded 10% discard lands in a sane band over 300 messages', async (t) => {
  const b = new FakeBackend({ id: 'loser', discardShare: 0.1, seed: 3 })
  await b.start()
  t.teardown(() => b.stop())
  for (let i = 0; i < 300; i++)
    await sendMessage({
      host: '127.0.0.1',
      port: b.port,
      from: 'a@x.test',
      to: ['b@example.com'],
      message: makeTestMessage(),
    })
  t.ok(b.counters.discarded >= 15 && b.counters.discarded <= 50, `${b.counters.discarded} of 300 discarded`)
})

t.test('kept canaries are forwarded by SMTP; user mail and discarded canaries are not', async (t) => {
  const sink = new FakeBackend({ id: 'mxgate-stand-in' })
  await sink.start()
  t.teardown(() => sink.stop())
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  b.forwardCanaries({ smtp: { host: '127.0.0.1', port: sink.port, to: 'canary-return@example.com' } })
  const token = newToken()
  await sendMessage({ host: '127.0.0.1', port: b.port, from: '', to: ['canary@example.com'], message: canary(token) })
  await sendMessage({
    host: '127.0.0.1',
    port: b.port,
    from: 'a@x.test',
    to: ['b@example.com'],
    message: makeTestMessage(),
  })
  t.ok(await eventually(() => sink.received.length === 1, 10_000), 'one forward arrived')
  const fwd = sink.received[0]!
  t.same(fwd.to, ['canary-return@example.com'])
  t.match(fwd.raw.toString('latin1'), `X-Mxgate-Canary: ${token}`)
  b.discardShare = 1
  await sendMessage({
    host: '127.0.0.1',
    port: b.port,
    from: '',
    to: ['canary@example.com'],
    message: canary(newToken()),
  })
  await b.stop()
  t.equal(sink.received.length, 1, 'a discarded canary is never forwarded')
})

t.test('kept canaries can be reported by the webhook with its token', async (t) => {
  const seen: { url: string; auth: string | undefined }[] = []
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', auth: req.headers.authorization })
    res.end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const b = new FakeBackend({ id: 'mx1', canaryReturn: { webhook: { url, token: 'hook-token-0123456789' } } })
  await b.start()
  t.teardown(() => b.stop())
  const token = newToken()
  await sendMessage({ host: '127.0.0.1', port: b.port, from: '', to: ['canary@example.com'], message: canary(token) })
  t.ok(await eventually(() => seen.length === 1, 10_000))
  t.same(seen, [{ url: `/api/canaries/${token}`, auth: 'Bearer hook-token-0123456789' }])
})

t.test('mxgate fake-backend: --discard and the canary options, with errors naming the option', async (t) => {
  t.match(parseFakeBackendArgs(['--discard', '0.1']), { discardShare: 0.1 })
  t.match(parseFakeBackendArgs(['--canary-smtp', '127.0.0.1:2525', '--canary-to', 'r@example.com']), {
    canaryReturn: { smtp: { host: '127.0.0.1', port: 2525, to: 'r@example.com' } },
  })
  t.match(parseFakeBackendArgs(['--canary-webhook', 'http://127.0.0.1:8025', '--canary-token', 'tok']), {
    canaryReturn: { webhook: { url: 'http://127.0.0.1:8025', token: 'tok' } },
  })
  t.throws(() => parseFakeBackendArgs(['--discard', '2']), {
    message: '--discard must be a number from 0 to 1, got "2"',
  })
  t.throws(() => parseFakeBackendArgs(['--canary-smtp', '127.0.0.1:2525']), {
    message: "--canary-smtp needs --canary-to (mxgate's canary.return_address)",
  })
  t.throws(() => parseFakeBackendArgs(['--canary-webhook', 'http://x']), {
    message: '--canary-webhook needs --canary-token (canary.webhook_token)',
  })
  t.throws(() => parseFakeBackendArgs(['--canary-to', 'r@example.com']), {
    message: '--canary-to and --canary-token go with --canary-smtp or --canary-webhook',
  })
})
