// "The message reaches the backend byte for byte as the sender sent it, plus one Received header" (README), proved
// through a real `mxgate start` (Haraka and all): a raw socket sends exact DATA bytes, the fake backend keeps the DATA
// bytes it got off the wire, and the two must be equal once the one Received header at the top is taken off.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { type MxgateProcess, startMxgate } from './helpers/mxgate-process'
import { sendRawMessage } from './helpers/raw-smtp'

const CRLF = '\r\n'

/** CRLF-terminated lines, as bytes (latin1, so a test can write any byte as \xNN). */
const lines = (...ls: string[]): Buffer => Buffer.from(ls.map((l) => l + CRLF).join(''), 'latin1')

/**
 * The wire bytes after the first header field, which must be a Received field (its first line and every folded
 * line after it). Written here from RFC 5322 folding, not with mxgate's or Haraka's code.
 */
function afterOneReceived(wire: Buffer): { received: string; rest: Buffer } {
  if (!wire.subarray(0, 10).equals(Buffer.from('Received: '))) {
    throw new Error(`the backend's copy does not start with a Received header: ${wire.subarray(0, 60).toString()}`)
  }
  let end = wire.indexOf(CRLF) + 2
  while (end > 1 && (wire[end] === 0x20 || wire[end] === 0x09)) end = wire.indexOf(CRLF, end) + 2
  if (end < 2) throw new Error('the Received header never ends')
  return { received: wire.subarray(0, end).toString('latin1'), rest: wire.subarray(end) }
}

let backend: FakeBackend
let mxgate: MxgateProcess

t.before(async () => {
  backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  mxgate = await startMxgate({ backends: `mx1=127.0.0.1:${backend.port}` })
})
t.teardown(async () => {
  await mxgate?.stop()
  await backend?.stop()
})

/** Sends `data` (wire form) and checks the backend got exactly it, after one Received header. */
async function relaysExactly(t: Test, data: Buffer): Promise<void> {
  const before = backend.received.length
  const reply = await sendRawMessage({ port: mxgate.port, from: 'sender@remote.test', to: ['user@example.com'], data })
  t.match(reply, /^250 2\.0\.0 Message accepted/)
  t.equal(backend.received.length, before + 1, 'the backend got one message')
  const got = backend.received.at(-1)!
  const { received, rest } = afterOneReceived(got.wire)
  t.match(received, /^Received: from sender\.mxgate\.test \(.*\r\n\tby mxgate\.localdomain \(mxgate\) with ESMTP id /)
  if (rest.equals(data)) t.pass('the sender’s bytes follow the Received header unchanged')
  else {
    // Show where they part, as text around the first difference: a diff of two (large) buffers says little.
    let at = 0
    while (at < rest.length && at < data.length && rest[at] === data[at]) at++
    const near = (b: Buffer) => b.subarray(Math.max(0, at - 80), at + 120).toString('latin1')
    t.equal(near(rest), near(data), `the sender’s bytes follow the Received header unchanged (differ at byte ${at})`)
    t.equal(rest.length, data.length, 'same length')
  }
}

t.test('a normal message: header, blank line, body', (t) =>
  relaysExactly(t, lines('Subject: x', 'From: a@b', '', 'body line', 'second')),
)

t.test('no blank line between header and body: body lines are not sent twice', (t) =>
  relaysExactly(t, lines('Subject: x', 'From: a@b', 'body line', 'second')),
)

t.test('a header-only message gains no empty line at its end', (t) =>
  relaysExactly(t, lines('Subject: x', 'From: a@b')),
)

t.test('an empty message reaches the backend as just the Received header', (t) => relaysExactly(t, Buffer.alloc(0)))

t.test('a first line that is not a header', async (t) => {
  await relaysExactly(t, lines('hello world', 'second line'))
  await relaysExactly(t, lines('hello world', 'Subject: x', '', 'body'))
})

t.test('dot-stuffed lines stay stuffed, with and without a blank line after the header', async (t) => {
  await relaysExactly(t, lines('Subject: dots', '', '..leading dot', '..', '...', '. space'))
  await relaysExactly(t, lines('Subject: dots', '..leading dot', '..', '...'))
})

t.test('a bare message of only dot-stuffed lines', (t) => relaysExactly(t, lines('..', '...', '..x')))

t.test('8-bit header bytes that are not UTF-8, with and without a blank line after the header', async (t) => {
  // latin1 é, a lone continuation byte, 0xff: none of them valid UTF-8.
  await relaysExactly(t, lines('Subject: caf\xe9 \x80\xff', 'From: a@b', '', 'body \xe9'))
  await relaysExactly(t, lines('Subject: caf\xe9 \x80\xff', 'From: a@b', 'body \xe9', 'X-Not: \xff'))
})

t.test('long header folding, with and without a blank line after the header', async (t) => {
  const folded = ['X-Long: start', ...Array.from({ length: 300 }, (_, i) => `\tfolded line ${i}`)]
  await relaysExactly(t, lines('Subject: folded', ...folded, 'From: a@b', '', 'body'))
  await relaysExactly(t, lines('Subject: folded', ...folded, 'body without a separator'))
})

t.test('a header section beyond Haraka’s header limits (1000 parsed lines, 1 MB skipped by get_data)', async (t) => {
  // 13,000 fields of 90 bytes: 1.17 MB of header, 13 times headers.max_lines.
  const fields = Array.from({ length: 13_000 }, (_, i) => `X-Filler-${String(i).padStart(5, '0')}: ${'f'.repeat(72)}`)
  await relaysExactly(t, lines(...fields, '', 'body'))
  await relaysExactly(t, lines(...fields, 'body without a separator', 'second'))
  // A header-only message longer than headers.max_lines.
  await relaysExactly(t, lines(...fields.slice(0, 1200)))
})

t.test('a line just under Haraka’s 1 MiB data_line_length is not split', (t) =>
  relaysExactly(t, lines('Subject: long', '', 'z'.repeat(1_048_000))),
)
