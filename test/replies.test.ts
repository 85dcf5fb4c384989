// What the sender hears for each relay outcome.
import t from 'tap'
import type { SmtpReply } from '../src/backend/outcome'
import { senderReply } from '../src/haraka/replies'
import type { AttemptRecord } from '../src/relay/relay'

const common = { deliveries: [], refused: [], attempts: [] as AttemptRecord[] }
const r = (code: number, enhanced: string | null, text: string): SmtpReply => ({ code, enhanced, lines: [text] })
const attempt: AttemptRecord = { backendId: 'mx1', verdict: 'backend', stage: 'connect', detail: 'x', elapsedMs: 1 }

t.test('maps relay outcomes to SMTP replies', async (t) => {
  t.same(senderReply({ outcome: 'delivered', ...common }), { code: 250, text: '2.0.0 Message accepted for delivery' })
  t.same(senderReply({ outcome: 'rejected', reply: r(554, '5.6.0', 'Content rejected'), ...common }), {
    code: 554,
    text: '5.6.0 Content rejected',
  })
  t.same(
    senderReply({ outcome: 'rejected', reply: r(550, null, 'User unknown'), ...common }),
    { code: 550, text: '5.0.0 User unknown' },
    'a backend without enhanced codes gets a generic one',
  )
  t.same(
    senderReply({ outcome: 'rejected', reply: r(550, '4.1.1', 'mismatched'), ...common }),
    { code: 550, text: '5.0.0 mismatched' },
    'an enhanced code whose class contradicts the reply code is replaced',
  )
  t.same(senderReply({ outcome: 'deferred', pending: ['a'], reason: 'x', reply: r(452, '4.2.2', 'Full'), ...common }), {
    code: 452,
    text: '4.2.2 Full',
  })
  t.same(senderReply({ outcome: 'deferred', pending: ['a'], reason: 'x', reply: null, ...common }), {
    code: 451,
    text: '4.4.1 No mail server is available to take this message now; try again later',
  })
  t.same(
    senderReply({
      outcome: 'deferred',
      pending: ['a'],
      reason: 'x',
      reply: null,
      ...common,
      attempts: [attempt, attempt],
    }),
    { code: 451, text: '4.4.1 No mail server accepted this message (2 tried); try again later' },
  )
})

t.test('every recipient refused: one reply, theirs when they agree, else each named with its own', async (t) => {
  const rej = (refused: { rcpt: string; reply: SmtpReply }[]) =>
    senderReply({ outcome: 'rejected', reply: refused[0]!.reply, deliveries: [], attempts: [], refused })
  const unknown = r(550, '5.1.1', 'User unknown')
  t.same(
    rej([
      { rcpt: 'a@x', reply: unknown },
      { rcpt: 'b@x', reply: unknown },
    ]),
    { code: 550, text: '5.1.1 User unknown' },
    'alike: passed as it is',
  )
  t.same(
    rej([
      { rcpt: 'a@x', reply: r(550, '5.1.1', '<a@x> unknown') },
      { rcpt: 'b@x', reply: r(550, '5.1.1', '<b@x> unknown') },
    ]),
    {
      code: 550,
      text: [
        '5.1.1 Every recipient was refused, each for its own reason:',
        '5.1.1 <a@x>: 550 5.1.1 <a@x> unknown',
        '5.1.1 <b@x>: 550 5.1.1 <b@x> unknown',
      ].join('\n'),
    },
    'same codes, different texts: the shared codes, every text',
  )
  t.same(
    rej([
      { rcpt: 'a@x', reply: unknown },
      { rcpt: 'b@x', reply: r(550, '5.7.1', 'Policy') },
    ]).text.split('\n')[0],
    '5.0.0 Every recipient was refused, each for its own reason:',
    'same code, different enhanced codes: 5.0.0',
  )
  const many = Array.from({ length: 25 }, (_, i) => ({ rcpt: `u${i}@x`, reply: r(550, '5.1.1', `u${i}`) }))
  const lines = rej(many).text.split('\n')
  t.equal(lines.length, 22, 'a header line, 20 recipients, and a count of the rest')
  t.equal(lines.at(-1), '5.1.1 ... and 5 more recipients')
})
