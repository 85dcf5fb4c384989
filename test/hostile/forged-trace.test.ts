// A sender's Authentication-Results claiming our authserv-id reaches the backend renamed (RFC 8601 §5), through the
// live Haraka path; other fields and the rest of the message are untouched.
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'
import { sendRawMessage } from '../helpers/raw-smtp'

t.test('forged Authentication-Results are renamed before the backend sees them', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const data =
    'Authentication-Results: mxgate.localdomain; dkim=pass header.d=bank.test\r\n' +
    'Authentication-Results: elsewhere.test; spf=pass\r\n' +
    // Space before the colon (RFC 5322's obsolete syntax, still read by mail clients): renamed all the same.
    'authentication-results \t: (ours) mxgate.localdomain; dmarc=pass\r\n' +
    'Subject: pay now\r\n' +
    '\r\n' +
    'Authentication-Results: mxgate.localdomain; a body line stays\r\n'
  const reply = await sendRawMessage({
    port: m.port,
    from: 's@remote.test',
    to: ['a@example.com'],
    data: Buffer.from(data),
  })
  t.match(reply, /^250 /)
  t.equal(b.received.length, 1)
  const got = b.received[0]!.raw.toString('latin1')
  const afterReceived = got.slice(got.indexOf('\r\nX-Mxgate-Forged') + 2)
  t.equal(
    afterReceived,
    'X-Mxgate-Forged-Authentication-Results: mxgate.localdomain; dkim=pass header.d=bank.test\r\n' +
      'Authentication-Results: elsewhere.test; spf=pass\r\n' +
      'X-Mxgate-Forged-Authentication-Results: (ours) mxgate.localdomain; dmarc=pass\r\n' +
      'Subject: pay now\r\n' +
      '\r\n' +
      'Authentication-Results: mxgate.localdomain; a body line stays\r\n',
  )
})
