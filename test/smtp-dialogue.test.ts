// Golden dialogue: bad input from a sender gets a clear SMTP reply, command by command (as Postfix's smtpd .ref tests).
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { startMxgate } from './helpers/mxgate-process'
import { dialogue } from './helpers/smtp-dialogue'

t.test('bad commands and envelopes get clear replies', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const golden: [string, RegExp][] = [
    [
      'EHLO client.test',
      /^250-mxgate\.localdomain Hello .*\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800$/,
    ],
    ['RCPT TO:<a@example.com>', /^503 Use MAIL before RCPT$/],
    ['MAIL FROM:<bad address>', /^501 Invalid MAIL FROM address <bad address>/],
    ['MAIL FROM:<s@remote.test> SIZE=99999999999', /^552 5\.3\.4 Message size exceeds fixed maximum message size$/],
    ['MAIL FROM:<s@remote.test>', /^250 sender <s@remote\.test> OK$/],
    ['DATA', /^503 RCPT required first$/],
    ['RCPT TO:<a@example.com', /^501 Invalid RCPT TO address/],
    ['RCPT TO:<postmaster@elsewhere.test>', /^550 5\.7\.1 <postmaster@elsewhere\.test>: relay access denied/],
    ['RCPT TO:<a@sub.example.com>', /^550 5\.7\.1 .*relay access denied/],
    ['RCPT TO:<a@Example.COM>', /^250 recipient <a@Example\.COM> OK$/],
    ['XYZZY', /^500 Unrecognized command$/],
    ['DATA', /^354 /],
    ['Subject: golden\r\n\r\nhello\r\n.', /^250 2\.0\.0 Message accepted for delivery \(/],
    ['QUIT', /^221 mxgate\.localdomain closing connection$/],
  ]
  const replies = await dialogue(
    m.port,
    golden.map(([c]) => c),
  )
  t.match(replies[0], /^220 mxgate\.localdomain ESMTP mxgate ready/)
  golden.forEach(([cmd, expected], i) => {
    t.match(replies[i + 1], expected, `${cmd.split('\r\n')[0]} → ${replies[i + 1]}`)
  })
  t.equal(b.received.length, 1, 'only the good message went on')
  t.same(b.received[0]?.to, ['a@Example.COM'])
})

t.test('a message over the size limit is refused and nothing is forwarded', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const big = `Subject: big\r\n\r\n${`${'z'.repeat(998)}\r\n`.repeat(53_000)}.`
  const replies = await dialogue(m.port, [
    'EHLO c',
    'MAIL FROM:<s@remote.test>',
    'RCPT TO:<a@example.com>',
    'DATA',
    big,
  ])
  t.equal(replies[5], '552 5.3.4 Message size exceeds fixed maximum message size')
  t.equal(b.received.length, 0)
})
