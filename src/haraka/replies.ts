// What the sender hears for each relay outcome. Pure, so every mapping is unit-tested.
import { type RecipientReply, replyText, type SmtpReply } from '../backend/outcome'
import type { AcceptResult } from '../relay/accept'
import type { RelayResult } from '../relay/relay'
import { SpoolFullError } from '../spool/errors'

export interface SenderReply {
  code: number
  /**
   * Text after the code, starting with the enhanced status code. Lines of a multi-line reply are separated by "\n";
   * Haraka sends each with the code (RFC 5321 §4.2.1); every line starts with the enhanced code (RFC 2034).
   */
  text: string
}

/** Recipients listed one per line in a combined refusal; more are counted on a last line. */
const MAX_LISTED = 20
/** Octets of a reply line's text, so that with `554-` and CRLF it stays within 512 (RFC 5321 §4.5.3.1.5). */
const MAX_LINE_TEXT = 512 - 4 - 2

/**
 * A backend's words made fit for one line to the sender: control characters become spaces (a bare CR ends the line
 * early for some peers, an ESC reaches a terminal), and the text is cut on a character boundary to `MAX_LINE_TEXT`
 * octets of UTF-8.
 */
function lineText(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const clean = text.replace(/[\x00-\x1f\x7f]/g, ' ')
  if (Buffer.byteLength(clean, 'utf8') <= MAX_LINE_TEXT) return clean
  let out = ''
  let used = 0
  for (const ch of clean) {
    used += Buffer.byteLength(ch, 'utf8')
    if (used > MAX_LINE_TEXT) break
    out += ch
  }
  return out
}

/** A backend's refusal as the sender hears it: its code and enhanced code when they fit, its text made safe. */
export function passBack(reply: SmtpReply, fallbackEnhanced: string): SenderReply {
  const text = lineText(reply.lines[0] ?? '').trim() || 'refused by the mail system'
  // Only 4xx/5xx are passed back; anything else from a backend here would be a bug upstream.
  const code = reply.code >= 400 && reply.code < 600 ? reply.code : Number(fallbackEnhanced[0]) * 100 + 51
  const enhanced = reply.enhanced && reply.enhanced[0] === String(code)[0] ? reply.enhanced : fallbackEnhanced
  return { code, text: lineText(`${enhanced} ${text}`) }
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

/**
 * The one reply after DATA when the backends refused every recipient for good. SMTP has a single reply for the
 * whole message (RFC 5321 §3.3); per-recipient replies after DATA exist only in LMTP (RFC 2033). The recipients
 * were accepted at RCPT, so their individual refusals arrive here together:
 * - all refused alike (same code, enhanced code and text), or only one: that reply, as a proxy passes it (Postfix's
 *   smtpd_proxy_filter does the same);
 * - refused differently: one multi-line reply with every recipient and its own reply, so the sender's bounce tells
 *   each recipient's fate. The code is theirs when they share it, else 554 (transaction failed); the enhanced code
 *   likewise, else 5.0.0. Not 250 and a DSN per recipient: accepting mail for recipients that do not exist and then
 *   bouncing it is backscatter to forged senders; and not 4xx: retrying cannot change a permanent refusal.
 */
function refusalReply(refused: RecipientReply[], fallback: SmtpReply): SenderReply {
  const each = refused.map((r) => passBack(r.reply, '5.0.0'))
  const first = each[0]
  if (first === undefined) return passBack(fallback, '5.0.0')
  if (each.every((r) => r.code === first.code && r.text === first.text)) return first
  const enhancedOf = (r: SenderReply) => r.text.split(' ', 1)[0]
  const code = each.every((r) => r.code === first.code) ? first.code : 554
  const enhanced =
    code === first.code && each.every((r) => enhancedOf(r) === enhancedOf(first)) ? enhancedOf(first) : '5.0.0'
  const lines = [`${enhanced} Every recipient was refused, each for its own reason:`]
  for (const r of refused.slice(0, MAX_LISTED)) {
    lines.push(lineText(`${enhanced} <${r.rcpt}>: ${replyText(r.reply)}`))
  }
  if (refused.length > MAX_LISTED) lines.push(`${enhanced} ... and ${refused.length - MAX_LISTED} more recipients`)
  return { code, text: lines.join('\n') }
}

export function senderReply(result: RelayResult): SenderReply {
  switch (result.outcome) {
    case 'delivered':
      return { code: 250, text: '2.0.0 Message accepted for delivery' }
    case 'rejected':
      return refusalReply(result.refused, result.reply)
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
