// Properties of the backend reply parser: framing never depends on how TCP cut the bytes, and no input, however
// hostile, makes it throw anything but its own typed error or hold more than one bounded line.
import fc from 'fast-check'
import t from 'tap'
import type { SmtpReply } from '../../src/backend/outcome'
import { parseReply, ReplyParseError, ReplyReader } from '../../src/backend/reply-parser'
import { holds } from './check'

/** A reply code RFC 5321 §4.2 allows: first digit 2-5, second 0-5, third 0-9. */
const code = fc
  .tuple(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 9 }))
  .map(([a, b, c]) => a * 100 + b * 10 + c)

/** Reply text: printable ASCII and some UTF-8, never CR or LF. */
const text = fc.string({ unit: fc.constantFrom(...' abcdefghijklmnopqrstuvwxyz0123456789.-<>@:;=é€'), maxLength: 60 })

/** The parser's bound on one reply line, CRLF excluded (reply-parser.ts MAX_LINE_BYTES). */
const MAX_LINE = 8192

interface WireReply {
  code: number
  enhanced: string | null
  texts: string[]
}

const wireReply: fc.Arbitrary<WireReply> = fc
  .record({
    code,
    enhanced: fc.option(
      fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })).map(([s, d]) => `${s}.${d}`),
      { nil: null },
    ),
    texts: fc.array(text, { minLength: 2, maxLength: 6 }),
    // Sometimes the last line is exactly as long as the parser allows (8192 bytes before CRLF), so chunk boundaries
    // fall around the bound too.
    longLast: fc.boolean(),
  })
  .map((r) => {
    const cls = Math.floor(r.code / 100)
    // RFC 3463 classes are 2, 4 and 5 only: a 3xx reply carries no enhanced code.
    const enhanced = r.enhanced === null || cls === 3 ? null : `${cls}.${r.enhanced}`
    const texts = r.longLast ? [...r.texts.slice(0, -1), 'x'.repeat(MAX_LINE - 4)] : r.texts
    return { code: r.code, enhanced, texts }
  })

function serialize(r: WireReply): string {
  return r.texts
    .map((line, i) => {
      const sep = i === r.texts.length - 1 ? ' ' : '-'
      const body = r.enhanced && i === 0 ? `${r.enhanced} ${line}` : line
      return `${r.code}${sep}${body}\r\n`
    })
    .join('')
}

/** Where to cut: anywhere, or right around a CR or LF (where framing bugs live), as [nearLineEnd, n, delta]. */
type Cut = [boolean, number, number]

/**
 * Cuts `bytes` at the given points (any order, duplicates allowed): every TCP segmentation is possible, and cuts
 * next to line ends are drawn often rather than left to chance.
 */
function cut(bytes: Buffer, cuts: Cut[]): Buffer[] {
  const ends: number[] = []
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10 || bytes[i] === 13) ends.push(i)
  const at = ([near, n, delta]: Cut) =>
    near && ends.length > 0 ? Math.min(bytes.length, Math.max(0, (ends[n % ends.length] ?? 0) + delta)) : n
  const points = [...new Set(cuts.map((c) => at(c) % (bytes.length + 1)))].sort((a, b) => a - b)
  const pieces: Buffer[] = []
  let from = 0
  for (const p of points) {
    pieces.push(bytes.subarray(from, p))
    from = p
  }
  pieces.push(bytes.subarray(from))
  return pieces
}

type Fed = { replies: SmtpReply[]; error: ReplyParseError | null; partial: boolean }

/** Feeds the chunks to one reader; any error other than ReplyParseError escapes and fails the property. */
function feed(chunks: Buffer[]): Fed {
  const reader = new ReplyReader()
  const replies: SmtpReply[] = []
  try {
    // Copies, so a reader that kept a reference to a caller's buffer would show up as corrupted replies.
    for (const c of chunks) reader.push(Buffer.from(c), (r) => replies.push(r))
  } catch (err) {
    if (!(err instanceof ReplyParseError)) throw err
    return { replies, error: err, partial: reader.partial }
  }
  return { replies, error: null, partial: reader.partial }
}

t.test('a reply line of the full allowed length parses when TCP cuts it between its CR and its LF', async (t) => {
  const line = Buffer.from(`250 ${'x'.repeat(MAX_LINE - 4)}\r\n`, 'latin1')
  const split = feed([line.subarray(0, line.length - 1), line.subarray(line.length - 1)])
  t.equal(split.error, null)
  t.same(split.replies, feed([line]).replies)
  t.equal(split.replies.length, 1)
})

const offsets = fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.integer({ min: -1, max: 2 })), { maxLength: 40 })

t.test('any split of valid pipelined replies into chunks parses to the same replies as one chunk', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.array(wireReply, { minLength: 1, maxLength: 4 }), offsets, (replies, at) => {
      const bytes = Buffer.from(replies.map(serialize).join(''), 'utf8')
      const whole = feed([bytes])
      const split = feed(cut(bytes, at))
      if (whole.error) throw whole.error
      if (split.error) throw split.error
      return JSON.stringify(split.replies) === JSON.stringify(whole.replies) && !split.partial
    }),
    200,
  )
})

t.test('a valid reply parses to its code, its enhanced code and one text per line', async (t) => {
  holds(
    t,
    __filename,
    fc.property(wireReply, (r) => {
      const parsed = parseReply(serialize(r))
      return (
        parsed.code === r.code &&
        parsed.enhanced === r.enhanced &&
        parsed.lines.length === r.texts.length &&
        // The enhanced code is stripped from the first line; the texts are otherwise as sent.
        parsed.lines[0] === r.texts[0]
      )
    }),
  )
})

/** Bytes a hostile or broken backend might send: mostly reply-like, with every byte value possible. */
const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc
    .array(
      fc.oneof(
        fc.constantFrom('250', '250-', '250 ', '5', '421 4.3.2 bye', '\r', '\n', '\r\n', '\0', '999 ', '25', '-', ' '),
        fc.string({ maxLength: 12 }),
      ),
      { maxLength: 40 },
    )
    .map((parts) => Buffer.from(parts.join(''), 'utf8')),
)

t.test('garbage in any split throws only ReplyParseError, and the outcome does not depend on the split', async (t) => {
  holds(
    t,
    __filename,
    fc.property(garbage, offsets, (bytes, at) => {
      const whole = feed([bytes])
      const split = feed(cut(bytes, at))
      // Same replies until the first error, and an error in one iff an error in the other.
      return (
        JSON.stringify(whole.replies) === JSON.stringify(split.replies) &&
        (whole.error === null) === (split.error === null)
      )
    }),
    500,
  )
})

// The reader may hold MAX_LINE bytes and a CR waiting for its LF; one byte more without an LF is refused.
t.test('a line that never ends is refused once it passes the bound, however it arrives', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.integer({ min: MAX_LINE + 2, max: 20_000 }), fc.integer({ min: 1, max: 4096 }), (n, chunk) => {
      const bytes = Buffer.alloc(n, 'a')
      bytes.write('250 ', 0, 'latin1')
      const pieces: Buffer[] = []
      for (let i = 0; i < n; i += chunk) pieces.push(bytes.subarray(i, i + chunk))
      return feed(pieces).error !== null
    }),
    50,
  )
})

t.test('parseReply on any text returns a reply or throws ReplyParseError, nothing else', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      try {
        const r = parseReply(s)
        return r.code >= 200 && r.code <= 559
      } catch (err) {
        return err instanceof ReplyParseError
      }
    }),
    500,
  )
})
