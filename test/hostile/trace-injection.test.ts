// What a client names itself and its addresses goes into the Received header mxgate adds and into log lines: a
// control character there (a bare CR, ESC) could start a forged header line at the backend or rewrite an operator's
// terminal. HELO/EHLO and addresses carrying one are refused (Haraka's checks, pinned here against upgrades), and the
// Received header that reaches the backend holds only what a clean client said.
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'
import { SmtpSession } from '../helpers/smtp-session'

t.test('control characters in HELO, EHLO and addresses are refused; the Received header stays clean', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())

  const greetings: Array<[string, string]> = [
    ['EHLO with a bare CR and a header after it', 'EHLO evil.test\rX-Injected: yes'],
    ['HELO with a bare CR', 'HELO evil.test\rX-Injected: yes'],
    ['EHLO with ESC', 'EHLO evil\x1b[2J.test'],
    ['EHLO with DEL', 'EHLO evil\x7f.test'],
    ['EHLO with a NUL', 'EHLO evil\x00.test'],
  ]
  for (const [what, line] of greetings) {
    const { session: s } = await SmtpSession.open(m.port)
    t.match(await s.command(line), /^50[01] /, `${what}: refused as a syntax error`)
    s.end()
  }

  const { session: s } = await SmtpSession.open(m.port)
  t.match(await s.command('EHLO client.test'), /^250/)
  const senders = ['<a\x1b[2Jb@remote.test>', '<a\rX-Injected: yes@remote.test>', '<a\x00b@remote.test>']
  for (const from of senders)
    t.match(await s.command(`MAIL FROM:${from}`), /^5\d\d /, `MAIL FROM ${JSON.stringify(from)}: refused`)
  t.match(await s.command('MAIL FROM:<s@remote.test>'), /^250/)
  for (const to of ['<u\x1bser@example.com>', '<user@exa\rmple.com>'])
    t.match(await s.command(`RCPT TO:${to}`), /^5\d\d /, `RCPT TO ${JSON.stringify(to)}: refused`)
  t.match(await s.command('RCPT TO:<user@example.com>'), /^250/)
  t.match(await s.command('DATA'), /^354/)
  t.match(await s.command('Subject: clean\r\n\r\nbody\r\n.'), /^250 /)
  s.end()

  t.equal(b.received.length, 1, 'only the clean message arrived')
  const wire = b.received[0]!.raw.toString('latin1')
  const received = wire.slice(0, wire.indexOf('\r\nSubject:'))
  t.match(received, /^Received: from client\.test /, 'the Received header names the clean EHLO')
  const unfolded = received.replace(/\r\n\t/g, ' ')
  const control = [...unfolded].filter((c) => c !== '\t' && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
  t.same(control, [], 'no control character in it but its folds')
  t.notMatch(wire, /X-Injected/, 'nothing injected reached the backend')
})
