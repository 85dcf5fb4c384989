// Properties of what the sender hears (src/haraka/replies.ts, README "What happens to a message"): whatever a
// backend said, the reply mxgate writes to the internet is well-formed SMTP — the right class, an enhanced code of
// that class on every line (RFC 2034), no line longer than 512 octets (RFC 5321 §4.5.3.1.5), no control characters
// that would end a line early or reach a terminal.
import fc from 'fast-check'
import t from 'tap'
import type { RecipientReply, SmtpReply } from '../../src/backend/outcome'
import { acceptReply, type SenderReply, senderReply } from '../../src/haraka/replies'
import { holds } from './check'

/** Backend reply text as the reply parser can hand it over: any character but LF, long or short. */
const backendText = fc.oneof(
  fc.string({ maxLength: 80 }).map((s) => s.replace(/\n/g, '')),
  fc.string({ unit: 'binary', maxLength: 80 }).map((s) => s.replace(/\n/g, '')),
  fc.string({ unit: fc.constantFrom('x', '€', '\r', '\t', '\0', '\x1b', ' '), minLength: 300, maxLength: 3000 }),
)

const backendReply = (min: number, max: number): fc.Arbitrary<SmtpReply> =>
  fc
    .tuple(fc.integer({ min, max }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 999 }), fc.boolean())
    .chain(([code, s, d, has]) =>
      fc.array(backendText, { minLength: 1, maxLength: 3 }).map((lines) => ({
        code,
        enhanced: has ? `${Math.floor(code / 100)}.${s}.${d}` : null,
        lines,
      })),
    )

const refusedList = fc.array(
  fc.record({ rcpt: fc.emailAddress(), reply: backendReply(500, 599) }) as fc.Arbitrary<RecipientReply>,
  { minLength: 1, maxLength: 25 },
)

/** The lines Haraka writes for this reply: `CODE-text` … `CODE text`, each ending CRLF. */
function wireLines(r: SenderReply): string[] {
  const lines = r.text.split('\n')
  return lines.map((l, i) => `${r.code}${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`)
}

/** What makes a sender reply well-formed; returns the first broken rule, or null. */
function broken(r: SenderReply, cls: number): string | null {
  if (Math.floor(r.code / 100) !== cls) return `code ${r.code} is not ${cls}xx`
  for (const line of wireLines(r)) {
    const body = line.slice(4, -2)
    if (!new RegExp(`^${cls}\\.\\d{1,3}\\.\\d{1,3} `).test(body))
      return `no ${cls}.x.x enhanced code: ${JSON.stringify(line)}`
    if (Buffer.byteLength(line, 'utf8') > 512) return `line of ${Buffer.byteLength(line, 'utf8')} octets`
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(body)) return `control character in ${JSON.stringify(line)}`
  }
  return null
}

const common = { attempts: [], deliveries: [] }

t.test('every recipient refused for good: a well-formed 5xx, whatever the backends wrote', async (t) => {
  holds(
    t,
    __filename,
    fc.property(refusedList, (refused) => {
      const r = senderReply({ outcome: 'rejected', reply: refused[0]!.reply, refused, ...common })
      const why = broken(r, 5)
      if (why) throw new Error(why)
      return true
    }),
    300,
  )
})

t.test('a temporary refusal passed back: a well-formed 4xx, whatever the backend wrote', async (t) => {
  holds(
    t,
    __filename,
    fc.property(backendReply(400, 499), (reply) => {
      const r = senderReply({
        outcome: 'deferred',
        pending: ['a@example.com'],
        reason: 'x',
        reply,
        refused: [],
        ...common,
      })
      const why = broken(r, 4)
      if (why) throw new Error(why)
      return true
    }),
    300,
  )
})

t.test('a message that reached a backend or the spool hears 250', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.boolean(), (spooled) => {
      const relay = { outcome: 'delivered' as const, refused: [], ...common }
      const r = spooled
        ? acceptReply({ outcome: 'spooled', spoolId: 'x', relay })
        : acceptReply({ outcome: 'relayed', relay })
      return r.code === 250 && broken(r, 2) === null
    }),
    20,
  )
})

t.test('a backend’s bare CR or long text does not reach the sender raw', async (t) => {
  const reply: SmtpReply = { code: 550, enhanced: '5.1.1', lines: ['No such user\r250 2.0.0 forged \x1b[2J'] }
  const one = senderReply({ outcome: 'rejected', reply, refused: [{ rcpt: 'a@example.com', reply }], ...common })
  t.same(one, { code: 550, text: '5.1.1 No such user 250 2.0.0 forged  [2J' })
  const long: SmtpReply = { code: 450, enhanced: '4.2.2', lines: ['€'.repeat(400)] }
  const r = senderReply({
    outcome: 'deferred',
    pending: ['a@example.com'],
    reason: 'x',
    reply: long,
    refused: [],
    ...common,
  })
  t.equal(r.code, 450)
  t.ok(Buffer.byteLength(`450 ${r.text}\r\n`) <= 512, 'fits in one 512-octet reply line')
  t.match(r.text, /^4\.2\.2 €+$/)
})
