import t from 'tap'
import { SpoolCorruptError } from '../src/spool/errors'
import {
  bodyOffset,
  decodeHeader,
  decodeMessageFile,
  encodeEnvelope,
  encodeMessageHead,
  parsePreamble,
  type SpoolEntry,
} from '../src/spool/format'

const body = Buffer.from('Subject: s\r\n\r\n..stuffed\r\n')
const entry: SpoolEntry = {
  version: 1,
  id: 'lq2x1-0123456789abcdef',
  from: '',
  to: ['a@example.com'],
  pending: ['a@example.com'],
  done: [],
  bounced: [],
  receivedAt: 1_700_000_000_000,
  attempts: 2,
  nextAttemptAt: 1_700_000_060_000,
  lastErrors: [{ backendId: 'b1', stage: 'dot', message: '451 4.3.0 try later', at: 1_700_000_001_000 }],
  trace: 'uuid-1',
  held: false,
  size: body.length,
}
const file = () => Buffer.concat([encodeMessageHead(entry, body), body])

t.test('a message file decodes to the same entry and body (null sender included)', async (t) => {
  const { entry: e, body: b } = decodeMessageFile(file(), 'f')
  t.same(e, entry)
  t.ok(b.equals(body))
})

t.test('an envelope sidecar decodes with the same header reader', async (t) => {
  const env = encodeEnvelope({ ...entry, attempts: 3 })
  const pre = parsePreamble(env, 'e')
  t.match(pre, { kind: 'envelope', version: 1, bodyLength: 0 })
  t.equal(bodyOffset(pre!), env.length)
  t.equal(decodeHeader(env, pre!, 'e').attempts, 3)
})

t.test('a short read asks for more; a file that is not ours says why', async (t) => {
  t.equal(parsePreamble(Buffer.from('MXSPOOL 1 12'), 'f'), null)
  t.throws(() => parsePreamble(Buffer.from('hello world\n'), 'f'), { code: 'ESPOOLCORRUPT', reason: 'bad preamble' })
  const v2 = Buffer.from(file().toString('latin1').replace('MXSPOOL 1 ', 'MXSPOOL 2 '), 'latin1')
  t.throws(() => parsePreamble(v2, 'f'), { code: 'ESPOOLCORRUPT', reason: /version 2 is not supported/ })
})

t.test('every kind of damage is a SpoolCorruptError', async (t) => {
  const cases: [string, (b: Buffer) => Buffer][] = [
    ['truncated body', (b) => b.subarray(0, b.length - 1)],
    ['extra bytes', (b) => Buffer.concat([b, Buffer.from('x')])],
    ['flipped body byte', (b) => flip(b, b.length - 2)],
    ['flipped header byte', (b) => flip(b, b.indexOf('"trace"') + 3)],
  ]
  for (const [name, damage] of cases) {
    t.throws(() => decodeMessageFile(damage(file()), 'f'), SpoolCorruptError, name)
  }
})

t.test('a header that parses but lacks a field or has the wrong type is rejected by name', async (t) => {
  const bad = { ...entry, pending: 'a@example.com' } as unknown as SpoolEntry
  const head = encodeMessageHead(bad, body)
  t.throws(() => decodeMessageFile(Buffer.concat([head, body]), 'f'), { code: 'ESPOOLCORRUPT', reason: /pending/ })
  const badId = { ...entry, id: '../../etc/passwd' }
  t.throws(() => decodeMessageFile(Buffer.concat([encodeMessageHead(badId, body), body]), 'f'), {
    code: 'ESPOOLCORRUPT',
    reason: /id/,
  })
})

function flip(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b)
  c[i] = (c[i] ?? 0) ^ 0x01
  return c
}
