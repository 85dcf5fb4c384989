// The canary message itself, and finding its token again in what comes back. Pure.
import { TOKEN_RE } from './tokens'

export const CANARY_HEADER = 'X-Mxgate-Canary'

export interface CanaryMessage {
  token: string
  backendId: string
  /** Where it goes (canary.address) and our name (Message-ID, Received-free headers). */
  to: string
  hostname: string
  now: Date
}

/** The canary in wire form (CRLF): the token in its own header and in the Subject, so either survives a forward. */
export function canaryBody(m: CanaryMessage): Buffer {
  const domain = m.to.slice(m.to.lastIndexOf('@') + 1)
  const lines = [
    `From: mxgate canary <postmaster@${domain}>`,
    `To: <${m.to}>`,
    `Subject: mxgate canary ${m.token}`,
    `Date: ${m.now.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${m.token}@${m.hostname}>`,
    `${CANARY_HEADER}: ${m.token}`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This is an end-to-end canary of ${m.hostname} through backend ${m.backendId}.`,
    `Forward it unchanged to mxgate's canary return address; token ${m.token}.`,
    '',
  ]
  return Buffer.from(lines.join('\r\n'), 'latin1')
}

/** The first canary token in a returned message (headers or body), or null. */
export function findToken(message: Buffer | string): string | null {
  const text = typeof message === 'string' ? message : message.toString('latin1')
  return TOKEN_RE.exec(text)?.[0] ?? null
}
