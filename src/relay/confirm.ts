// Which permanent refusals are asked twice, and what one attempt adds to its backend's shared counts.
// Pure: relay.ts asks, the health registry counts.
import type { DeliveryAttempt, SmtpReply } from '../backend/outcome'
import { classifyRefusal, type Verdict } from './classify'

/** Classes a permanent refusal may be confirmed for: `5.1` (address), `5.2` (mailbox), `5.6` (content), `X.3.4` (too big). */
export const CONFIRM_CLASSES = ['5.1', '5.2', '5.6', 'X.3.4'] as const
export type ConfirmClass = (typeof CONFIRM_CLASSES)[number]

/** The confirm class of a permanent, message-looking refusal, or null when it is not one. */
export function confirmClassOf(reply: SmtpReply): ConfirmClass | null {
  if (reply.code < 500 || reply.code >= 600 || reply.enhanced === null) return null
  if (/^5\.3\.4$/.test(reply.enhanced)) return 'X.3.4'
  const m = /^5\.([126])\./.exec(reply.enhanced)
  return m ? (`5.${m[1]}` as ConfirmClass) : null
}

/** Should a second backend confirm this refusal before the sender hears it? */
export function needsConfirmation(reply: SmtpReply, classes: readonly ConfirmClass[]): boolean {
  const c = confirmClassOf(reply)
  return c !== null && classes.includes(c)
}

/** A permanent message-looking refusal anywhere in the attempt (recipient or content): the detector's second signal. */
export function hasPermanentRefusal(a: DeliveryAttempt, v: Verdict): boolean {
  if (v.kind === 'message' && v.permanent && confirmClassOf(v.reply) !== null) return true
  return a.refused.some((r) => classifyRefusal(r.reply) === 'message-permanent' && confirmClassOf(r.reply) !== null)
}

/** The backend's own fault in this attempt: the whole attempt, or some recipients refused for its reasons. */
export function backendCaused(a: DeliveryAttempt, v: Verdict): boolean {
  if (v.kind === 'backend') return true
  return v.kind === 'delivered' && a.refused.some((r) => classifyRefusal(r.reply) === 'backend')
}
