// Whose fault is a backend's reply? The answer decides failover (backend fault), pass-back (message fault),
// or a second opinion (ambiguous). Pure functions: the table in DESIGN.md, written down once.
import type { DeliveryAttempt, SmtpReply } from '../backend/outcome'

export type ReplyClass =
  /** The backend is unwell: try another backend, charge this one. */
  | 'backend'
  /** The message or recipient is refused for good (no such user, content, too big): tell the sender. */
  | 'message-permanent'
  /** The message or recipient is refused for now (mailbox full, greylisting): the sender should retry. */
  | 'message-temporary'
  /** A 5xx that could be either (policy, syntax): ask another backend before deciding. */
  | 'ambiguous'

export type Verdict =
  | { kind: 'delivered' }
  | { kind: 'backend'; reason: string }
  | { kind: 'message'; permanent: boolean; reply: SmtpReply }
  | { kind: 'ambiguous'; reply: SmtpReply }
  /** This backend cannot take this envelope (nothing was sent): another may; no one is at fault. */
  | { kind: 'unsupported'; reason: string }
  /** mxgate's own sessions to this backend were all busy (nothing was sent): try another; no one is at fault. */
  | { kind: 'saturated'; reason: string }

/** RFC 3463 subject digit of an enhanced code ("5.1.1" → 1), or null without one. */
function subject(reply: SmtpReply): number | null {
  if (!reply.enhanced) return null
  const parts = reply.enhanced.split('.')
  const n = Number(parts[1])
  return Number.isInteger(n) ? n : null
}

/** Classifies a refusal of one recipient (RCPT) or of the message content (end of data). */
export function classifyRefusal(reply: SmtpReply): ReplyClass {
  if (reply.code === 421) return 'backend'
  const sub = subject(reply)
  // X.3.4 "message too big for system" is about the message, although X.3 is otherwise the system class.
  if (reply.enhanced !== null && /^[45]\.3\.4$/.test(reply.enhanced)) {
    return reply.code >= 500 ? 'message-permanent' : 'message-temporary'
  }
  if (reply.code >= 400 && reply.code < 500) {
    // Only the subjects that name the message or its recipient (RFC 3463: 1 address, 2 mailbox, 5 protocol,
    // 6 content, 7 policy) put it on the message. X.0.x "other or undefined", X.3/X.4 (system, network), a subject
    // RFC 3463 does not define, or none at all: the backend's state — else a backend that says 451 4.0.0 to every
    // message is never charged.
    if (sub === 1 || sub === 2 || sub === 5 || sub === 6 || sub === 7) return 'message-temporary'
    return 'backend'
  }
  if (reply.code >= 500 && reply.code < 600) {
    if (sub === 1 || sub === 2 || sub === 6) return 'message-permanent'
    if (sub === 3 || sub === 4) return 'backend'
    return 'ambiguous'
  }
  // A 1xx/3xx where a refusal was expected is a protocol violation by the backend.
  return 'backend'
}

function verdictOf(cls: ReplyClass, reply: SmtpReply, reason: string): Verdict {
  switch (cls) {
    case 'backend':
      return { kind: 'backend', reason }
    case 'message-permanent':
      return { kind: 'message', permanent: true, reply }
    case 'message-temporary':
      return { kind: 'message', permanent: false, reply }
    case 'ambiguous':
      return { kind: 'ambiguous', reply }
  }
}

/**
 * The verdict for one attempt as a whole. Refusals of single recipients in an otherwise successful attempt are
 * classified separately by the caller with classifyRefusal.
 */
export function classifyAttempt(attempt: DeliveryAttempt): Verdict {
  if (attempt.ok) return { kind: 'delivered' }
  const f = attempt.failure
  if (f === null) {
    // Every recipient refused at RCPT: the worst class among them decides.
    const refusals = attempt.refused
    if (refusals.length === 0) return { kind: 'backend', reason: 'backend refused without a reply' }
    const classes = refusals.map((r) => classifyRefusal(r.reply))
    const pick = (c: ReplyClass) => refusals[classes.indexOf(c)]!.reply
    const rcptReason = (r: SmtpReply) => `RCPT refused: ${r.code} ${r.enhanced ?? ''} ${r.lines[0] ?? ''}`.trim()
    if (classes.includes('backend')) return { kind: 'backend', reason: rcptReason(pick('backend')) }
    if (classes.includes('ambiguous')) return { kind: 'ambiguous', reply: pick('ambiguous') }
    if (classes.includes('message-temporary')) {
      return { kind: 'message', permanent: false, reply: pick('message-temporary') }
    }
    return { kind: 'message', permanent: true, reply: pick('message-permanent') }
  }
  if (f.kind === 'unsupported') return { kind: 'unsupported', reason: f.message }
  if (f.kind === 'saturated') return { kind: 'saturated', reason: f.message }
  if (f.kind !== 'reply' || f.reply === null) return { kind: 'backend', reason: f.message }
  const reply = f.reply
  if (reply.code === 421) return { kind: 'backend', reason: f.message }
  switch (f.stage) {
    case 'dot':
    case 'rcpt':
      return verdictOf(classifyRefusal(reply), reply, f.message)
    case 'mail': {
      const cls = classifyRefusal(reply)
      // A temporary refusal at MAIL that is not about the sender address (X.1.x) is the backend's state.
      if (cls === 'message-temporary' && subject(reply) !== 1) return { kind: 'backend', reason: f.message }
      return verdictOf(cls, reply, f.message)
    }
    default:
      // connect, banner, EHLO, STARTTLS, DATA, RSET, QUIT: a refusal there says nothing about this message.
      return { kind: 'backend', reason: f.message }
  }
}
