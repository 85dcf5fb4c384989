// The canary return address at RCPT and after DATA: mail to it is consumed by mxgate (never relayed, never
// spooled), so it must travel alone. Pure: no Haraka, no I/O.
import type { RecipientRefusal } from './recipient-policy'

/** What the canary scheduler made of a returned token (src/canary/scheduler.ts ReturnOutcome, by shape). */
export type ReturnOutcome =
  | { kind: 'returned'; backendId: string; roundTripMs: number }
  | { kind: 'unknown' }
  | { kind: 'off' }

export type CanaryRecipient = { kind: 'return' } | { kind: 'refuse'; refusal: RecipientRefusal } | null

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

/**
 * `rcpt` against the return address, given the recipients already accepted in this transaction: 'return' takes it
 * as a canary return, 'refuse' keeps the two kinds apart, null leaves it to the ordinary recipient policy. 452 so a
 * forwarder sends the refused one again in a transaction of its own (RFC 5321 §4.5.3.1.10).
 */
export function judgeCanaryRecipient(
  rcpt: string,
  earlier: readonly string[],
  returnAddress: string | null,
): CanaryRecipient {
  if (returnAddress === null) return null
  const isReturn = same(rcpt, returnAddress)
  const returnEarlier = earlier.some((r) => same(r, returnAddress))
  if (isReturn) {
    if (earlier.length > 0 && !returnEarlier)
      return {
        kind: 'refuse',
        refusal: {
          code: 452,
          enhanced: '4.5.3',
          text: `<${rcpt}> is mxgate's canary return address and takes no other recipients in the same message; send it in a separate message`,
        },
      }
    return { kind: 'return' }
  }
  if (returnEarlier)
    return {
      kind: 'refuse',
      refusal: {
        code: 452,
        enhanced: '4.5.3',
        text: `<${rcpt}>: not in the same message as the canary return address <${returnAddress}>; send it in a separate message`,
      },
    }
  return null
}

/** The reply to a message sent to the return address, once its token was looked for (null: none found). */
export function canaryReturnReply(
  token: string | null,
  outcome: ReturnOutcome | null,
  returnAddress: string,
): { code: number; text: string } {
  if (token === null || outcome === null)
    return {
      code: 550,
      text: `5.6.0 No canary token (X-Mxgate-Canary: mxc- and 24 hex digits) in the headers or body; <${returnAddress}> takes only returned mxgate canaries`,
    }
  if (outcome.kind === 'returned')
    return { code: 250, text: `2.0.0 Canary ${token} returned (through ${outcome.backendId})` }
  if (outcome.kind === 'off') return { code: 250, text: `2.0.0 Canary ${token} noted; canaries are off on this node` }
  return {
    code: 250,
    text: `2.0.0 Canary ${token} noted; it is not pending here (passed on to the node that sent it, if any)`,
  }
}
