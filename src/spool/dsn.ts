// RFC 3464 delivery status notifications (bounces) for spooled mail that failed for good, pure.
// The result is a multipart/report in SMTP wire form (CRLF, dot-stuffed, no terminating dot), to be sent with the
// null reverse path (MAIL FROM:<>) so that it can never cause another bounce (RFC 5321 §4.5.5).
import { randomBytes } from 'node:crypto'
import type { Envelope } from '../message'
import { DsnError } from './errors'

export interface FailedRecipient {
  rcpt: string
  /** RFC 3463 status, e.g. "5.1.1" (failed) or "4.4.1" (delayed). */
  status: string
  /** The remote reply or our reason, e.g. "550 5.1.1 <a@b>: no such user". */
  diagnostic: string
  /**
   * RFC 3464 Action. Default: 'delayed' for a 4.x.x status, 'failed' otherwise. A message given up with a
   * temporary status (4.4.7, delivery time expired) is 'failed': nobody will try again.
   */
  action?: 'failed' | 'delayed'
}

export interface DsnInput {
  /** Our host name, as in "Reporting-MTA: dns; <name>". */
  reportingMta: string
  originalEnvelope: Envelope
  failedRecipients: FailedRecipient[]
  /** When the original message arrived (epoch ms or Date). */
  arrivalDate: number | Date
  /** The original message's header section, not dot-stuffed (headerSection() gets it from a wire-form body). */
  originalHeaders: Buffer
  /** Message-ID for the notification itself, with or without angle brackets. */
  messageId: string
  /** The notification's Date: (default now). */
  date?: number | Date
  /** MIME boundary (default random); for reproducible tests. */
  boundary?: string
}

/** False for the null sender: nobody may be notified about a bounce or another notification. */
export function dsnAllowed(envelope: Envelope): boolean {
  return envelope.from !== ''
}

export function buildDsn(input: DsnInput): Buffer {
  const { reportingMta, originalEnvelope: env, failedRecipients: failed } = input
  if (!dsnAllowed(env)) {
    throw new DsnError('no DSN for a message with the null sender <> (RFC 5321 §4.5.5): drop or log it instead')
  }
  if (failed.length === 0) throw new DsnError('a DSN needs at least one failed or delayed recipient')
  if (!/^[A-Za-z0-9.-]+$/.test(reportingMta)) throw new DsnError(`reportingMta "${reportingMta}" is not a host name`)
  for (const f of failed) {
    if (!/^[245]\.\d{1,3}\.\d{1,3}$/.test(f.status)) {
      throw new DsnError(`status "${f.status}" for ${f.rcpt} is not an RFC 3463 code like 5.1.1`)
    }
  }
  const allDelayed = failed.every((f) => actionOf(f) === 'delayed')
  const boundary = input.boundary ?? `=_mxgate_${randomBytes(12).toString('hex')}`
  const date = rfc5322Date(input.date ?? Date.now())

  const human = [
    `This is the mail system at host ${reportingMta}.`,
    '',
    allDelayed
      ? 'Your message could not be delivered yet to the recipients below. The mail system will keep trying.'
      : 'Your message could not be delivered to one or more recipients. Its headers are attached below.',
    '',
    ...failed.map((f) => `<${oneLine(f.rcpt)}>: ${oneLine(f.diagnostic)}`),
    '',
  ].join('\r\n')
  const status = [
    `Reporting-MTA: dns; ${reportingMta}`,
    `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
    ...failed.flatMap((f) => [
      '',
      `Final-Recipient: ${addressType(f.rcpt)}; ${oneLine(f.rcpt)}`,
      `Action: ${actionOf(f)}`,
      `Status: ${f.status}`,
      `Diagnostic-Code: smtp; ${oneLine(f.diagnostic)}`,
    ]),
    '',
  ].join('\r\n')
  const headers = input.originalHeaders
  const eightBit = (s: string | Buffer): boolean => (Buffer.isBuffer(s) ? s.some((b) => b > 0x7f) : !isAscii(s))
  const cte = (s: string | Buffer): string => (eightBit(s) ? 'Content-Transfer-Encoding: 8bit\r\n' : '')
  const messageId = input.messageId.replace(/^<|>$/g, '')

  const top = [
    `From: Mail Delivery System <MAILER-DAEMON@${reportingMta}>`,
    `To: <${oneLine(env.from)}>`,
    `Subject: ${allDelayed ? 'Delayed Mail (still being retried)' : 'Undelivered Mail Returned to Sender'}`,
    `Date: ${date}`,
    `Message-ID: <${oneLine(messageId)}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
  ].join('\r\n')

  const chunks: Buffer[] = [
    Buffer.from(`${top}\r\n--${boundary}\r\n`),
    Buffer.from(`Content-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n${cte(human)}\r\n`),
    Buffer.from(`${human}\r\n--${boundary}\r\n`),
    Buffer.from(`Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n${cte(status)}\r\n`),
    Buffer.from(`${status}\r\n--${boundary}\r\n`),
    Buffer.from(`Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n`),
    Buffer.from(`${cte(headers)}\r\n`),
    headers,
    Buffer.from(headers.length > 0 && !headers.subarray(-1).equals(LF) ? '\r\n' : ''),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]
  return toWireForm(Buffer.concat(chunks))
}

/** The header section of a wire-form body (up to and including the blank line's first CRLF), dot-unstuffed. */
export function headerSection(wireBody: Buffer): Buffer {
  const s = wireBody.toString('latin1')
  const end = s.startsWith('\r\n') ? 0 : s.indexOf('\r\n\r\n')
  const head = end < 0 ? s : s.slice(0, end === 0 ? 0 : end + 2)
  return Buffer.from(head.replace(/(^|\r\n)\.\./g, '$1.'), 'latin1')
}

/** CRLF line endings (bare CR or LF become CRLF) and a second dot before every line that starts with one. */
export function toWireForm(buf: Buffer): Buffer {
  const s = buf.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n')
  return Buffer.from(s.replace(/(^|\r\n)\./g, '$1..'), 'latin1')
}

const LF = Buffer.from('\n')

function isAscii(s: string): boolean {
  return Buffer.byteLength(s, 'utf8') === s.length
}

function actionOf(f: FailedRecipient): string {
  if (f.action) return f.action
  if (f.status.startsWith('2.')) return 'delivered'
  return f.status.startsWith('4.') ? 'delayed' : 'failed'
}

/** RFC 6533: an internationalized address is reported with the utf-8 address type. */
function addressType(addr: string): string {
  return isAscii(addr) ? 'rfc822' : 'utf-8'
}

/** One header-safe line: no CR/LF (header injection), no controls, bounded length (998-octet line limit). */
function oneLine(s: string): string {
  const flat = [...s.replace(/[\r\n\t]+/g, ' ')].filter((c) => c >= ' ' && c !== '\u007f').join('')
  return flat.length > 900 ? `${flat.slice(0, 897)}...` : flat
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** RFC 5322 date in UTC with a numeric zone, e.g. "Tue, 05 Mar 2024 10:00:00 +0000". */
export function rfc5322Date(when: number | Date): string {
  const d = new Date(when)
  const p2 = (n: number): string => String(n).padStart(2, '0')
  return (
    `${DAYS[d.getUTCDay()]}, ${p2(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} +0000`
  )
}
