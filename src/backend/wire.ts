// Raw RFC 5322 bytes → SMTP wire form (the form Envelope bodies travel in; see src/message.ts).

const CR = 13
const LF = 10
const DOT = 46

/**
 * CRLF-normalise and dot-stuff a raw message, without adding the terminating ".". Bare LF and bare CR both become
 * CRLF: RFC 5322 allows neither, and passing a bare one through is what makes SMTP smuggling ("<LF>.<CR><LF>",
 * "<CR>.<CR>") possible at a backend that reads it as end-of-data. Returns `raw` itself when nothing needs changing.
 */
export function toWireForm(raw: Buffer): Buffer {
  const n = raw.length
  let extra = 0
  let lineStart = true
  for (let i = 0; i < n; i++) {
    const b = raw[i]
    if (lineStart && b === DOT) extra++
    if (b === CR) {
      if (raw[i + 1] === LF) i++
      else extra++
      lineStart = true
    } else if (b === LF) {
      extra++
      lineStart = true
    } else {
      lineStart = false
    }
  }
  if (extra === 0) return raw

  const out = Buffer.allocUnsafe(n + extra)
  let o = 0
  lineStart = true
  for (let i = 0; i < n; i++) {
    const b = raw[i] as number
    if (lineStart && b === DOT) out[o++] = DOT
    if (b === CR || b === LF) {
      out[o++] = CR
      out[o++] = LF
      if (b === CR && raw[i + 1] === LF) i++
      lineStart = true
    } else {
      out[o++] = b
      lineStart = false
    }
  }
  return out
}
