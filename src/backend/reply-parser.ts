// SMTP reply parsing (RFC 5321 §4.2, enhanced codes RFC 3463). Pure: bytes in, SmtpReply out, no I/O.
import type { SmtpReply } from './outcome'

/** A backend sent bytes that are not a well-formed SMTP reply. The session that read them cannot be trusted. */
export class ReplyParseError extends Error {
  readonly code = 'EREPLYPARSE'
  override name = 'ReplyParseError'
}

// Generous next to RFC 5321's 512-octet reply line, but bounded so a misbehaving peer cannot grow our buffer forever.
const MAX_LINE_BYTES = 8192
const MAX_LINES = 512
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?= |$)/

/**
 * Incremental reader: feed it socket chunks, it emits each complete reply in order. Partial lines are kept in a
 * small buffer that grows only when a line spans chunks; a chunk holding whole lines is parsed in place.
 */
export class ReplyReader {
  private buf: Buffer = Buffer.allocUnsafe(512)
  private len = 0
  private code = 0
  private texts: string[] = []

  /** True while bytes of an unfinished line or lines of an unfinished multi-line reply are held. */
  get partial(): boolean {
    return this.len > 0 || this.texts.length > 0
  }

  /** Forget any partial input, e.g. after the socket under this reader was replaced by a TLS one. */
  reset(): void {
    this.len = 0
    this.code = 0
    this.texts = []
  }

  /** Parse a chunk; calls emit for every reply it completes. Throws ReplyParseError on malformed input. */
  push(chunk: Buffer, emit: (reply: SmtpReply) => void): void {
    let data = chunk
    let size = chunk.length
    if (this.len > 0) {
      this.ensure(this.len + chunk.length)
      chunk.copy(this.buf, this.len)
      this.len += chunk.length
      data = this.buf
      size = this.len
    }
    let start = 0
    for (;;) {
      const lf = data.indexOf(10, start)
      if (lf < 0 || lf >= size) break
      const end = lf > start && data[lf - 1] === 13 ? lf - 1 : lf
      this.line(data, start, end, emit)
      start = lf + 1
    }
    const rest = size - start
    // A line of the full MAX_LINE_BYTES may be held with its CR while its LF is still in flight.
    if (rest > MAX_LINE_BYTES + 1) throw new ReplyParseError(`reply line longer than ${MAX_LINE_BYTES} bytes`)
    if (data === this.buf) {
      if (start > 0) this.buf.copy(this.buf, 0, start, size)
    } else if (rest > 0) {
      this.ensure(rest)
      data.copy(this.buf, 0, start, size)
    }
    this.len = rest
  }

  private ensure(capacity: number): void {
    if (capacity <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(capacity, this.buf.length * 2))
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }

  private line(data: Buffer, start: number, end: number, emit: (reply: SmtpReply) => void): void {
    const n = end - start
    if (n > MAX_LINE_BYTES) throw new ReplyParseError(`reply line longer than ${MAX_LINE_BYTES} bytes`)
    const d0 = data[start] ?? 0
    const d1 = data[start + 1] ?? 0
    const d2 = data[start + 2] ?? 0
    const sep = n > 3 ? data[start + 3] : 32
    // RFC 5321 §4.2: first digit 2-5, second 0-5, third 0-9; then SP, '-', or end of line.
    if (n < 3 || d0 < 50 || d0 > 53 || d1 < 48 || d1 > 53 || d2 < 48 || d2 > 57 || (sep !== 32 && sep !== 45)) {
      throw new ReplyParseError(`malformed reply line ${JSON.stringify(data.toString('latin1', start, end))}`)
    }
    const code = (d0 - 48) * 100 + (d1 - 48) * 10 + (d2 - 48)
    if (this.texts.length > 0 && code !== this.code) {
      throw new ReplyParseError(`multi-line reply changes code from ${this.code} to ${code}`)
    }
    if (this.texts.length >= MAX_LINES) throw new ReplyParseError(`reply longer than ${MAX_LINES} lines`)
    this.code = code
    this.texts.push(n > 4 ? data.toString('utf8', start + 4, end) : '')
    if (sep === 45) return
    const texts = this.texts
    this.texts = []
    emit(buildReply(code, texts))
  }
}

/** Build a reply from its code and text lines: extract the enhanced code of the first line and strip it everywhere. */
export function buildReply(code: number, texts: string[]): SmtpReply {
  const m = ENHANCED.exec(texts[0] ?? '')
  // RFC 3463 §2: the class digit must match the reply's first digit; otherwise it is just text.
  if (!m || Number(m[1]) !== Math.floor(code / 100)) return { code, enhanced: null, lines: texts }
  const enhanced = m[0]
  const lines = texts.map((t) => (t.startsWith(enhanced) ? t.slice(enhanced.length).replace(/^ /, '') : t))
  return { code, enhanced, lines }
}

/** Parse one complete reply from text ("250-a\r\n250 b\r\n"). Throws ReplyParseError unless it is exactly one reply. */
export function parseReply(text: string): SmtpReply {
  const replies: SmtpReply[] = []
  const reader = new ReplyReader()
  const input = text.endsWith('\n') ? text : `${text}\r\n`
  reader.push(Buffer.from(input, 'utf8'), (r) => replies.push(r))
  if (reader.partial) throw new ReplyParseError('reply ends inside a multi-line reply')
  const [first, ...rest] = replies
  if (!first) throw new ReplyParseError('empty reply')
  if (rest.length > 0) throw new ReplyParseError(`expected one reply, got ${replies.length}`)
  return first
}

export function isPositive(reply: SmtpReply): boolean {
  return reply.code >= 200 && reply.code < 300
}
