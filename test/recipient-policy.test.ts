// Recipient policy at RCPT: the exact refusal for each routing form, judged on the mailbox a backend would use.
import t from 'tap'
import { dequoteLocalPart, judgeRecipient, type RecipientAddress } from '../src/inbound/recipient-policy'

const policy = { domains: ['example.com', 'example.org'], maxRecipients: 100 }
const addr = (user: string, host: string, original = `<${user}@${host}>`): RecipientAddress => ({
  user,
  host,
  original,
})

t.test('dequoteLocalPart removes the quotes and backslash escapes of a quoted local part only', async (t) => {
  t.equal(dequoteLocalPart('"a@b"'), 'a@b')
  t.equal(dequoteLocalPart('"a\\"b\\\\c"'), 'a"b\\c')
  t.equal(dequoteLocalPart('plain'), 'plain')
  t.equal(dequoteLocalPart('"'), '"')
  t.equal(dequoteLocalPart('"half'), '"half')
})

t.test('ordinary recipients of our domains and bare postmaster are accepted', async (t) => {
  t.equal(judgeRecipient(addr('user', 'example.com'), 1, policy), null)
  t.equal(judgeRecipient(addr('first.last+tag', 'example.org'), 1, policy), null)
  t.equal(judgeRecipient(addr('"first last"', 'example.com'), 1, policy), null)
  t.equal(judgeRecipient(addr('postmaster', '', '<postmaster>'), 1, policy), null)
  t.equal(judgeRecipient(addr('postmaster', '', 'postmaster'), 1, policy), null)
  t.equal(judgeRecipient(addr('user', 'example.com'), 100, policy), null, 'the 100th recipient is still taken')
})

t.test('every routing form is refused with 550 5.7.1 naming the address and why', async (t) => {
  const routing = 'a local part with %, ! or @ routes mail elsewhere; this server does not relay'
  const cases: [RecipientAddress, string][] = [
    [addr('user%other.test', 'example.com'), `<user%other.test@example.com>: ${routing}`],
    [addr('user!other', 'example.com'), `<user!other@example.com>: ${routing}`],
    [addr('other!user', 'example.com'), `<other!user@example.com>: ${routing}`],
    [addr('"user@other.test"', 'example.com'), `<"user@other.test"@example.com>: ${routing}`],
    [addr('"user\\@other.test"', 'example.com'), `<"user\\@other.test"@example.com>: ${routing}`],
    [addr('"user%other"', 'example.com'), `<"user%other"@example.com>: ${routing}`],
    [
      addr('user', 'example.com', '<@other.test:user@example.com>'),
      '<@other.test:user@example.com>: source routes are not accepted; this server does not relay',
    ],
    [
      addr('user', 'example.com', '@a.test,@b.test:user@example.com'),
      '<@a.test,@b.test:user@example.com>: source routes are not accepted; this server does not relay',
    ],
    [
      addr('user', 'other.test'),
      '<user@other.test>: relay access denied; this server accepts mail only for its own domains',
    ],
    [
      addr('user', 'sub.example.com'),
      '<user@sub.example.com>: relay access denied; this server accepts mail only for its own domains',
    ],
    [addr('abuse', '', '<abuse>'), '<abuse>: relay access denied; this server accepts mail only for its own domains'],
  ]
  for (const [rcpt, text] of cases) {
    t.same(judgeRecipient(rcpt, 1, policy), { code: 550, enhanced: '5.7.1', text }, rcpt.original)
  }
})

t.test('a recipient over the limit hears 452 4.5.3 before anything else is judged', async (t) => {
  const over = { code: 452, enhanced: '4.5.3', text: 'Too many recipients (at most 100 per message)' }
  t.same(judgeRecipient(addr('user', 'example.com'), 101, policy), over)
  t.same(judgeRecipient(addr('user', 'other.test'), 101, policy), over)
})
