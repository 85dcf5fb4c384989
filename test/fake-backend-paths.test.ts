// The fake backend reads a path as RFC 5321 writes it: a quoted local part may hold '>' (qtextSMTP), so the path
// ends at the first '>' outside quotes. Found by the fuzz run, whose open-relay check reads the recipients the
// backend records: `"a>b"@example.com` was recorded as `"a`.
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'

t.test('quoted local parts with > and escaped quotes are recorded whole', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const to = ['"a>b"@example.com', '"a\\"b"@example.com', 'plain@example.com']
  const sent = await sendMessage({
    host: '127.0.0.1',
    port: b.port,
    from: '"odd>sender"@sender.test',
    to,
    message: makeTestMessage(),
  })
  t.equal(sent.code, 250, sent.reply)
  t.same(b.received[0]?.to, to)
  t.equal(b.received[0]?.from, '"odd>sender"@sender.test')
})
