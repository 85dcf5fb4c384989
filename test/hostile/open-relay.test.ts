// An MX front door must not become an open relay through its backends: recipients whose mailbox is elsewhere are
// refused at RCPT, whatever form the route takes, and nothing of theirs reaches a backend.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'
import { dialogue } from '../helpers/smtp-dialogue'

const RELAY_DENIED = /^550 5\.7\.1 /

t.test('routing tricks in the recipient are refused at RCPT with 550 5.7.1', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())

  const tricks = [
    '<user%other.test@example.com>',
    '<user!other.test@example.com>',
    '<other.test!user@example.com>',
    '<"user@other.test"@example.com>',
    '<"user%other.test"@example.com>',
    '<"user!other"@example.com>',
    '<"user\\@other.test"@example.com>',
    '<@example.com:user@other.test>',
    '<@other.test:user@example.com>',
    '<@a.test,@b.test:user@example.com>',
    '<user@other.test>',
    '<user@example.com.other.test>',
    '<user@[127.0.0.1]>',
    '<postmaster@other.test>',
  ]
  for (const rcpt of tricks) {
    const replies = await dialogue(m.port, ['EHLO client.test', 'MAIL FROM:<s@remote.test>', `RCPT TO:${rcpt}`])
    t.match(replies[3], RELAY_DENIED, `${rcpt} → ${replies[3]}`)
  }
  t.equal(b.received.length, 0, 'no message reached the backend')
  t.equal(b.counters.messages, 0, 'the backend saw no transaction')
})

t.test('bare <postmaster> and ordinary recipients of our domains are accepted and relayed', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())

  const replies = await dialogue(m.port, [
    'EHLO client.test',
    'MAIL FROM:<s@remote.test>',
    'RCPT TO:<postmaster>',
    'RCPT TO:<Postmaster>',
    'RCPT TO:<user.name+tag@example.com>',
    'RCPT TO:<"first last"@example.com>',
    'RCPT TO:<user%other.test@example.com>',
    'DATA',
    'Subject: hello\r\n\r\nhi\r\n.',
  ])
  t.match(replies[3], /^250 /, `<postmaster> → ${replies[3]}`)
  t.match(replies[4], /^250 /, `<Postmaster> → ${replies[4]}`)
  t.match(replies[5], /^250 /)
  t.match(replies[6], /^250 /)
  t.match(replies[7], RELAY_DENIED)
  t.match(replies[9], /^250 2\.0\.0 /)
  t.equal(b.received.length, 1)
  t.same(b.received[0]?.to, ['postmaster', 'postmaster', 'user.name+tag@example.com', '"first last"@example.com'])
})

t.test('recipients beyond max_recipients get 452 4.5.3 and the message goes to the rest', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-hostile-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'mxgate.ini'), '[smtp]\nmax_recipients = 100\n')
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}`, args: ['--config', dir] })
  t.teardown(() => m.stop())

  const rcpts = Array.from({ length: 102 }, (_, i) => `RCPT TO:<u${i}@example.com>`)
  const replies = await dialogue(m.port, [
    'EHLO client.test',
    'MAIL FROM:<s@remote.test>',
    ...rcpts,
    'DATA',
    'Subject: many\r\n\r\nhi\r\n.',
  ])
  const rcptReplies = replies.slice(3, 3 + rcpts.length)
  t.equal(rcptReplies.filter((r) => r.startsWith('250 ')).length, 100, 'the first 100 are accepted')
  t.match(rcptReplies[100], /^452 4\.5\.3 Too many recipients \(at most 100 per message\)$/)
  t.match(rcptReplies[101], /^452 4\.5\.3 /)
  t.match(replies.at(-1), /^250 2\.0\.0 /)
  t.equal(b.received.length, 1)
  t.equal(b.received[0]?.to.length, 100)
  t.equal(b.received[0]?.to.at(-1), 'u99@example.com')
})

t.test('a too large SIZE and a message over the limit get 552 5.3.4', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const replies = await dialogue(m.port, [
    'EHLO client.test',
    'MAIL FROM:<s@remote.test> SIZE=1000000000',
    'MAIL FROM:<s@remote.test> SIZE=1000',
  ])
  t.match(replies[1], /\r\n250 SIZE 52428800$/, 'SIZE is advertised with the limit')
  t.equal(replies[2], '552 5.3.4 Message size exceeds fixed maximum message size')
  t.match(replies[3], /^250 /, 'a sender may try again with a smaller size')
  t.equal(b.received.length, 0)
})
