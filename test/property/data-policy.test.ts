// Properties of the DATA byte check, stated as the README says it: a NUL byte or a bare CR (one not followed by LF)
// anywhere in DATA refuses the message with 554 5.6.0; every CRLF-framed message without them passes.
import fc from 'fast-check'
import t from 'tap'
import { dataFaultReply, dataLineFault } from '../../src/inbound/data-policy'
import { holds } from './check'

/** Splits DATA the way Haraka's line reader hands it over: after each LF, the rest as a last line. */
function haraka(data: Buffer): Buffer[] {
  const lines: Buffer[] = []
  let from = 0
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 10) {
      lines.push(data.subarray(from, i + 1))
      from = i + 1
    }
  }
  if (from < data.length) lines.push(data.subarray(from))
  return lines
}

/** Bytes biased toward the interesting ones: CR, LF, NUL, '.', 8-bit. */
const dataByte = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 255 }) },
  { weight: 3, arbitrary: fc.constantFrom(13, 10, 0, 46, 0xff, 0x80) },
)
const data = fc.array(dataByte, { maxLength: 200 }).map((a) => Buffer.from(a))

/** Text lines of any byte except CR, LF and NUL (8-bit included), framed with CRLF. */
const cleanLine = fc
  .array(
    fc.integer({ min: 1, max: 255 }).filter((b) => b !== 10 && b !== 13),
    { maxLength: 80 },
  )
  .map((a) => Buffer.concat([Buffer.from(a), Buffer.from('\r\n')]))

const hasNul = (b: Buffer) => b.includes(0)
const hasBareCr = (b: Buffer) => b.some((x, i) => x === 13 && b[i + 1] !== 10)

t.test('a message is refused exactly when it holds a NUL or a CR not followed by LF', async (t) => {
  holds(
    t,
    __filename,
    fc.property(data, (d) => {
      const faults = haraka(d).map(dataLineFault)
      const refused = faults.some((f) => f !== null)
      return refused === (hasNul(d) || hasBareCr(d))
    }),
    1000,
  )
})

t.test('each line names its own fault: NUL first, else a bare CR', async (t) => {
  holds(
    t,
    __filename,
    fc.property(data, (d) =>
      haraka(d).every((line) => {
        const f = dataLineFault(line)
        if (hasNul(line)) return f === 'NUL'
        if (hasBareCr(line)) return f === 'bare CR'
        return f === null
      }),
    ),
    1000,
  )
})

t.test('every CRLF-framed message of 8-bit text without NUL or bare CR passes', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.array(cleanLine, { maxLength: 20 }), (lines) =>
      haraka(Buffer.concat(lines)).every((l) => dataLineFault(l) === null),
    ),
  )
})

t.test('the refusal is permanent: 554 5.6.0, so the sender does not retry it forever', async (t) => {
  for (const fault of ['NUL', 'bare CR'] as const) {
    const r = dataFaultReply(fault)
    t.equal(r.code, 554)
    t.equal(r.enhanced, '5.6.0')
    t.notMatch(r.text, /[\r\n]/)
  }
})
