// The fault table of DESIGN.md, case by case: whose fault is each reply?
import t from 'tap'
import type { DeliveryAttempt, SmtpReply, Stage, StageFailure } from '../src/backend/outcome'
import { classifyAttempt, classifyRefusal } from '../src/relay/classify'

function reply(text: string): SmtpReply {
  const m = /^(\d{3}) (?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(text)!
  return { code: Number(m[1]), enhanced: m[2] ?? null, lines: [m[3] ?? ''] }
}

function failed(stage: Stage, kind: StageFailure['kind'], text?: string): DeliveryAttempt {
  const r = text ? reply(text) : null
  return {
    backendId: 'b',
    ok: false,
    accepted: [],
    refused: [],
    dotReply: null,
    failure: { stage, kind, reply: r, message: `${stage}: ${text ?? kind}`, elapsedMs: 1 },
    elapsedMs: 1,
    reusedSession: false,
  }
}

function allRefused(...texts: string[]): DeliveryAttempt {
  return {
    ...failed('rcpt', 'reply'),
    failure: null,
    refused: texts.map((x, i) => ({ rcpt: `r${i}@example.com`, reply: reply(x) })),
  }
}

t.test('refusals of a recipient or of the content', async (t) => {
  const table: [string, string][] = [
    ['550 5.1.1 No such user', 'message-permanent'],
    ['552 5.2.2 Mailbox full', 'message-permanent'],
    ['554 5.6.0 Content rejected', 'message-permanent'],
    ['552 5.3.4 Message too big', 'message-permanent'],
    ['452 4.2.2 Mailbox full', 'message-temporary'],
    ['450 4.7.1 Greylisted', 'message-temporary'],
    ['451 4.0.0 Undefined error', 'backend'],
    ['451 4.8.1 Not an RFC 3463 subject', 'backend'],
    ['451 4.9.0 Not an RFC 3463 subject', 'backend'],
    ['451 4.3.0 Local error', 'backend'],
    ['451 4.4.1 No answer from host', 'backend'],
    ['451 Try later', 'backend'],
    ['421 4.3.2 Shutting down', 'backend'],
    ['554 5.3.0 Other mail system problem', 'backend'],
    ['550 5.4.4 Unable to route', 'backend'],
    ['550 5.7.1 Relaying denied', 'ambiguous'],
    ['500 5.5.2 Syntax error', 'ambiguous'],
    ['550 Rejected', 'ambiguous'],
    ['354 go ahead', 'backend'],
  ]
  for (const [text, cls] of table) t.equal(classifyRefusal(reply(text)), cls, text)
})

t.test('failures below SMTP are always the backend’s', async (t) => {
  for (const kind of ['timeout', 'reset', 'refused', 'tls', 'protocol'] as const) {
    for (const stage of ['connect', 'banner', 'ehlo', 'mail', 'rcpt', 'data', 'dot'] as const) {
      t.equal(classifyAttempt(failed(stage, kind)).kind, 'backend', `${kind} at ${stage}`)
    }
  }
})

t.test('replies by stage', async (t) => {
  const table: [Stage, string, string][] = [
    ['banner', '554 5.7.1 No service', 'backend'],
    ['ehlo', '550 5.5.1 Who are you', 'backend'],
    ['data', '451 4.3.0 Try later', 'backend'],
    ['data', '554 5.6.0 No', 'backend'],
    ['mail', '451 4.3.0 Try later', 'backend'],
    ['mail', '452 4.3.1 Insufficient storage', 'backend'],
    ['mail', '450 4.1.8 Sender domain unresolvable', 'message'],
    ['mail', '553 5.1.8 Bad sender domain', 'message'],
    ['mail', '552 5.3.4 Too big', 'message'],
    ['mail', '550 5.7.1 Sender blocked', 'ambiguous'],
    ['dot', '554 5.6.0 Content rejected', 'message'],
    ['dot', '451 4.3.0 Queue write error', 'backend'],
    ['dot', '421 4.3.2 Closing', 'backend'],
    ['dot', '550 5.7.1 Policy', 'ambiguous'],
    ['rcpt', '421 4.4.2 Timeout', 'backend'],
  ]
  for (const [stage, text, kind] of table) {
    t.equal(classifyAttempt(failed(stage, 'reply', text)).kind, kind, `${text} at ${stage}`)
  }
  const temp = classifyAttempt(failed('dot', 'reply', '452 4.2.2 Full'))
  t.same(temp, { kind: 'message', permanent: false, reply: reply('452 4.2.2 Full') })
})

t.test('every recipient refused: the worst class decides', async (t) => {
  t.same(classifyAttempt(allRefused('550 5.1.1 No such user', '550 5.1.1 No such user')), {
    kind: 'message',
    permanent: true,
    reply: reply('550 5.1.1 No such user'),
  })
  t.equal(classifyAttempt(allRefused('550 5.1.1 No', '451 4.3.0 Oops')).kind, 'backend')
  t.equal(classifyAttempt(allRefused('550 5.1.1 No', '550 5.7.1 Relay denied')).kind, 'ambiguous')
  const t2 = classifyAttempt(allRefused('550 5.1.1 No', '452 4.2.2 Full'))
  t.same([t2.kind, t2.kind === 'message' && t2.permanent], ['message', false])
  t.equal(classifyAttempt({ ...allRefused(), refused: [] }).kind, 'backend', 'no reply at all is not the message’s')
})

t.test('a delivered attempt is delivered', async (t) => {
  t.same(classifyAttempt({ ...failed('dot', 'reply'), ok: true, failure: null }), { kind: 'delivered' })
})
