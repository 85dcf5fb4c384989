// Properties of the fault table (README "Whose fault is a reply?", src/relay/classify.ts): every reply gets a
// verdict, and the rows that protect mail hold for every code and enhanced code, not just the ones in a table.
import fc from 'fast-check'
import t from 'tap'
import type { DeliveryAttempt, SmtpReply, Stage } from '../../src/backend/outcome'
import { STAGES } from '../../src/backend/outcome'
import { classifyAttempt, classifyRefusal } from '../../src/relay/classify'
import { holds } from './check'

const CLASSES = ['backend', 'message-permanent', 'message-temporary', 'ambiguous']
const KINDS = ['delivered', 'backend', 'message', 'ambiguous', 'unsupported', 'saturated']

/** An enhanced code for a reply of this class (RFC 3463: class digit = first digit of the code), or none. */
function enhancedFor(code: number, subject: number, detail: number, has: boolean): string | null {
  const cls = Math.floor(code / 100)
  return has && (cls === 2 || cls === 4 || cls === 5) ? `${cls}.${subject}.${detail}` : null
}

/** Any reply code 200-599 with any enhanced code its class allows (or none), and any text. */
const reply = (codes = fc.integer({ min: 200, max: 599 })): fc.Arbitrary<SmtpReply> =>
  fc
    .tuple(codes, fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 999 }), fc.boolean(), fc.string())
    .map(([code, s, d, has, text]) => ({ code, enhanced: enhancedFor(code, s, d, has), lines: [text] }))

/** A 5xx at RCPT or end of data with the given subject digit. */
const fiveWithSubject = (subjects: number[]) =>
  fc
    .tuple(fc.integer({ min: 500, max: 599 }), fc.constantFrom(...subjects), fc.integer({ min: 0, max: 999 }))
    .map(([code, s, d]): SmtpReply => ({ code, enhanced: `5.${s}.${d}`, lines: ['refused'] }))

function attemptFailing(stage: Stage, r: SmtpReply): DeliveryAttempt {
  return {
    backendId: 'mx1',
    ok: false,
    accepted: [],
    refused: [],
    dotReply: null,
    failure: { stage, kind: 'reply', reply: r, message: `${stage}: ${r.code}`, elapsedMs: 1 },
    elapsedMs: 1,
    reusedSession: false,
  }
}

function allRefusedAtRcpt(replies: SmtpReply[]): DeliveryAttempt {
  return {
    ...attemptFailing('rcpt', replies[0] ?? { code: 550, enhanced: null, lines: [] }),
    failure: null,
    refused: replies.map((r, i) => ({ rcpt: `r${i}@example.com`, reply: r })),
  }
}

const stage = fc.constantFrom(...STAGES)

t.test(
  'classifyRefusal is total: every code 200-599 with any enhanced code gets one of the four classes',
  async (t) => {
    holds(
      t,
      __filename,
      fc.property(reply(), (r) => CLASSES.includes(classifyRefusal(r))),
      1000,
    )
  },
)

t.test('classifyAttempt is total over every stage and reply', async (t) => {
  holds(
    t,
    __filename,
    fc.property(stage, reply(), (s, r) => KINDS.includes(classifyAttempt(attemptFailing(s, r)).kind)),
    1000,
  )
})

t.test('a 421 is always the backend’s fault, at every stage and with any enhanced code', async (t) => {
  holds(
    t,
    __filename,
    fc.property(stage, reply(fc.constant(421)), (s, r) => {
      return classifyRefusal(r) === 'backend' && classifyAttempt(attemptFailing(s, r)).kind === 'backend'
    }),
  )
})

t.test('5.1.x, 5.2.x and 5.6.x at RCPT and end of data are the message’s, for good', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.constantFrom<Stage>('rcpt', 'dot'), fiveWithSubject([1, 2, 6]), (s, r) => {
      const v = classifyAttempt(attemptFailing(s, r))
      return classifyRefusal(r) === 'message-permanent' && v.kind === 'message' && v.permanent
    }),
  )
})

t.test(
  'every recipient refused with 5.1.x/5.2.x/5.6.x: the message’s, for good, with one of their replies',
  async (t) => {
    holds(
      t,
      __filename,
      fc.property(fc.array(fiveWithSubject([1, 2, 6]), { minLength: 1, maxLength: 5 }), (rs) => {
        const v = classifyAttempt(allRefusedAtRcpt(rs))
        return v.kind === 'message' && v.permanent && rs.includes(v.reply)
      }),
    )
  },
)

t.test('X.3.4 (too big) is never the backend’s fault at RCPT or end of data, nor a 5.3.4 at MAIL', async (t) => {
  const x34 = fc
    .tuple(fc.constantFrom(4, 5), fc.integer({ min: 0, max: 99 }))
    .filter(([cls, rest]) => cls * 100 + 50 + (rest % 10) !== 421)
    .map(([cls, rest]): SmtpReply => ({ code: cls * 100 + 50 + (rest % 10), enhanced: `${cls}.3.4`, lines: ['big'] }))
  holds(
    t,
    __filename,
    fc.property(x34, fc.constantFrom<Stage>('rcpt', 'dot', 'mail'), (r, s) => {
      // README: "4xx at MAIL (except 4.1.x)" is the backend's; a permanent 5.3.4 at MAIL is the message's.
      fc.pre(!(s === 'mail' && r.code < 500))
      return classifyRefusal(r) !== 'backend' && classifyAttempt(attemptFailing(s, r)).kind !== 'backend'
    }),
  )
})

t.test('any 4xx/5xx at banner, EHLO or DATA is the backend’s fault', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.constantFrom<Stage>('banner', 'ehlo', 'data'), reply(fc.integer({ min: 400, max: 599 })), (s, r) => {
      return classifyAttempt(attemptFailing(s, r)).kind === 'backend'
    }),
  )
})

t.test('a message-class verdict is permanent exactly when its reply is a 5xx', async (t) => {
  holds(
    t,
    __filename,
    fc.property(stage, reply(fc.integer({ min: 400, max: 599 })), (s, r) => {
      const v = classifyAttempt(attemptFailing(s, r))
      if (v.kind !== 'message') return true
      return v.permanent === r.code >= 500
    }),
    1000,
  )
})
