// Which recipients mxgate takes from the internet at RCPT time. Pure: no Haraka, no I/O.
//
// mxgate's backends trust it, and a backend may still honour old routing forms (Postfix's `allow_percent_hack`,
// `swap_bangpath`, quoted local parts): `user%other@ourdomain` is then relayed to `other`. So the judgement is made on
// the mailbox a backend would deliver to — the dequoted local part — not on the text after the last `@`.

export interface RecipientAddress {
  /** The local part as parsed, quotes included when the sender quoted it (`"a@b"`). */
  user: string
  /** The domain, lower case, A-label form; '' for bare `<postmaster>`. */
  host: string
  /** The path as the sender wrote it, e.g. `<@relay.test:user@example.com>`. */
  original: string
}

export interface RecipientRefusal {
  code: number
  enhanced: string
  text: string
}

export interface RecipientPolicy {
  /** Our domains, lower case, without a trailing dot. */
  domains: readonly string[]
  /** Recipients accepted per message; RFC 5321 §4.5.3.1.8 says at least 100. */
  maxRecipients: number
}

/** RFC 5321 §4.1.2 quoted-string → its content: `"a\"b"` → `a"b`. Unquoted parts are returned as they are. */
export function dequoteLocalPart(user: string): string {
  if (user.length < 2 || !user.startsWith('"') || !user.endsWith('"')) return user
  return user.slice(1, -1).replace(/\\(.)/g, '$1')
}

/** Characters that make a local part a route to somewhere else on some mail servers. */
const ROUTING = /[%!@]/

/**
 * The refusal for a recipient, or null to accept it. `count` is how many recipients the transaction holds with this
 * one. Order matters: a client over the recipient limit hears 452 (it may send the rest in another transaction),
 * whatever the recipient.
 */
export function judgeRecipient(
  rcpt: RecipientAddress,
  count: number,
  policy: RecipientPolicy,
): RecipientRefusal | null {
  const shown = rcpt.original.startsWith('<') ? rcpt.original : `<${rcpt.original}>`
  if (count > policy.maxRecipients) {
    return { code: 452, enhanced: '4.5.3', text: `Too many recipients (at most ${policy.maxRecipients} per message)` }
  }
  if (/^<?\s*@/.test(rcpt.original)) {
    return {
      code: 550,
      enhanced: '5.7.1',
      text: `${shown}: source routes are not accepted; this server does not relay`,
    }
  }
  // RFC 5321 §4.5.1: every SMTP server must take mail for bare <postmaster>.
  if (rcpt.host === '' && rcpt.user.toLowerCase() === 'postmaster') return null
  const domain = rcpt.host.toLowerCase().replace(/\.$/, '')
  if (domain === '' || !policy.domains.includes(domain)) {
    return {
      code: 550,
      enhanced: '5.7.1',
      text: `${shown}: relay access denied; this server accepts mail only for its own domains`,
    }
  }
  if (ROUTING.test(dequoteLocalPart(rcpt.user))) {
    return {
      code: 550,
      enhanced: '5.7.1',
      text: `${shown}: a local part with %, ! or @ routes mail elsewhere; this server does not relay`,
    }
  }
  return null
}
