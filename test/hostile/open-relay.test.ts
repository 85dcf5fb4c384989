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
  // Recipient verification asks a backend MAIL/RCPT at RCPT time: a routing recipient must not reach it that way
  // either, so every MAIL FROM and RCPT TO the backend sees is counted, not only finished messages.
  const transactions: string[] = []
  const asked: string[] = []
  b.on('transaction', (e) => transactions.push(e.sessionId))
  b.on('recipient', (e) => asked.push(e.rcpt))

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
  t.equal(b.counters.messages, 0, 'the backend accepted no message')
  t.same(asked, [], 'no recipient check (or anything else) asked the backend about any of them')
  t.equal(transactions.length, 0, 'the backend saw no MAIL FROM at all')

  // The control: a recipient of ours is checked at the backend, so the counts above would have seen a check.
  const ours = await dialogue(m.port, ['EHLO client.test', 'MAIL FROM:<s@remote.test>', 'RCPT TO:<user@example.com>'])
  t.match(ours[3], /^250 /, `<user@example.com> → ${ours[3]}`)
  t.same(asked, ['user@example.com'], 'the check of a recipient of ours reached the backend')
  t.equal(b.received.length, 0)
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

t.test('a too large SIZE at MAIL and a message over the limit at the dot get 552 5.3.4', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const TOO_BIG = '552 5.3.4 Message size exceeds fixed maximum message size'
  const replies = await dialogue(m.port, [
    'EHLO client.test',
    'MAIL FROM:<s@remote.test> SIZE=1000000000',
    'MAIL FROM:<s@remote.test> SIZE=1000',
  ])
  t.match(replies[1], /\r\n250 SIZE 52428800$/, 'SIZE is advertised with the limit')
  t.equal(replies[2], TOO_BIG)
  t.match(replies[3], /^250 /, 'a sender may try again with a smaller size')

  // Without SIZE= the limit is met at the dot: 53,000 lines of 1,000 bytes are over the advertised 52,428,800.
  const big = `Subject: big\r\n\r\n${`${'z'.repeat(998)}\r\n`.repeat(53_000)}.`
  const atDot = await dialogue(m.port, [
    'EHLO client.test',
    'MAIL FROM:<s@remote.test>',
    'RCPT TO:<a@example.com>',
    'DATA',
    big,
  ])
  t.match(atDot[4], /^354 /)
  t.equal(atDot[5], TOO_BIG, 'a message over the limit sent without SIZE= is refused at the dot')
  t.equal(b.received.length, 0, 'no message reached the backend')
  t.equal(b.counters.messages, 0, 'the backend accepted no message')
})
