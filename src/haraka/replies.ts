// What the sender hears for each relay outcome. Pure, so every mapping is unit-tested.
import type { SmtpReply } from '../backend/outcome'
import type { AcceptResult } from '../relay/accept'
import type { RelayResult } from '../relay/relay'
import { SpoolFullError } from '../spool/errors'

export interface SenderReply {
  code: number
  /** Text after the code, starting with the enhanced status code. */
  text: string
}

function passBack(reply: SmtpReply, fallbackEnhanced: string): SenderReply {
  const text = reply.lines[0]?.trim() || 'refused by the mail system'
  // Only 4xx/5xx are passed back; anything else from a backend here would be a bug upstream.
  const code = reply.code >= 400 && reply.code < 600 ? reply.code : Number(fallbackEnhanced[0]) * 100 + 51
  const enhanced = reply.enhanced && reply.enhanced[0] === String(code)[0] ? reply.enhanced : fallbackEnhanced
  return { code, text: `${enhanced} ${text}` }
}

export function acceptReply(result: AcceptResult): SenderReply {
  switch (result.outcome) {
    case 'relayed':
      return senderReply(result.relay)
    case 'spooled':
      return { code: 250, text: '2.0.0 Message accepted for delivery (queued)' }
    case 'spool-failed':
      return result.error instanceof SpoolFullError
        ? { code: 451, text: '4.3.4 Insufficient system storage to take this message now; try again later' }
        : { code: 451, text: '4.3.0 Local error while storing this message; try again later' }
  }
}

export function senderReply(result: RelayResult): SenderReply {
  switch (result.outcome) {
    case 'delivered':
      return { code: 250, text: '2.0.0 Message accepted for delivery' }
    case 'rejected':
      return passBack(result.reply, '5.0.0')
    case 'deferred':
      if (result.reply) return passBack(result.reply, '4.0.0')
      return {
        code: 451,
        text:
          result.attempts.length === 0
            ? '4.4.1 No mail server is available to take this message now; try again later'
            : `4.4.1 No mail server accepted this message (${result.attempts.length} tried); try again later`,
      }
  }
}
