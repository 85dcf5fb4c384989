import t from 'tap'
import type { SmtpReply } from '../src/backend/outcome'
import { buildReply, parseReply, ReplyParseError, ReplyReader } from '../src/backend/reply-parser'

t.test('parses a single-line reply with an enhanced status code', async (t) => {
  t.same(parseReply('250 2.1.0 Ok'), { code: 250, enhanced: '2.1.0', lines: ['Ok'] })
  t.same(parseReply('451 4.3.0 Try again later\r\n'), { code: 451, enhanced: '4.3.0', lines: ['Try again later'] })
})

t.test('parses a reply without enhanced code, and a bare code', async (t) => {
  t.same(parseReply('220 mx.example ESMTP'), { code: 220, enhanced: null, lines: ['mx.example ESMTP'] })
  t.same(parseReply('354'), { code: 354, enhanced: null, lines: [''] })
})

t.test('parses a multi-line reply and strips the enhanced code from every line that repeats it', async (t) => {
  const reply = parseReply(
    '550-5.1.1 The email account does not exist.\r\n550-5.1.1 Please check.\r\n550 5.1.1 Bye\r\n',
  )
  t.same(reply, { code: 550, enhanced: '5.1.1', lines: ['The email account does not exist.', 'Please check.', 'Bye'] })
})

t.test('parses an EHLO reply, where the enhanced-code-like tokens are not codes', async (t) => {
  const reply = parseReply('250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000')
  t.same(reply, { code: 250, enhanced: null, lines: ['mx.example', 'PIPELINING', '8BITMIME', 'SIZE 1000'] })
})

t.test('ignores an enhanced code whose class does not match the reply code', async (t) => {
  t.same(parseReply('250 5.0.0 odd'), { code: 250, enhanced: null, lines: ['5.0.0 odd'] })
  t.same(buildReply(421, ['4.4.2 timeout']), { code: 421, enhanced: '4.4.2', lines: ['timeout'] })
})

t.test('accepts bare LF line endings from sloppy servers', async (t) => {
  t.same(parseReply('250-a\n250 b\n'), { code: 250, enhanced: null, lines: ['a', 'b'] })
})

t.test('rejects malformed replies with a typed error', async (t) => {
  for (const bad of ['hello', '25 ok', '650 ok', '260 bad second digit', '250_ok', '', '250-a\r\n251 b', '250-a']) {
    t.throws(() => parseReply(bad), ReplyParseError, JSON.stringify(bad))
  }
  t.throws(() => parseReply('250 a\r\n250 b'), { code: 'EREPLYPARSE', message: /expected one reply, got 2/ })
  t.throws(() => parseReply('x'), { name: 'ReplyParseError', code: 'EREPLYPARSE' })
})

t.test('the reader emits replies split across chunks at any byte, in order', async (t) => {
  const text = '220 hi\r\n250-one\r\n250 2.0.0 two\r\n354 go\r\n'
  const bytes = Buffer.from(text)
  for (let cut = 1; cut < bytes.length; cut++) {
    const got: SmtpReply[] = []
    const reader = new ReplyReader()
    reader.push(bytes.subarray(0, cut), (r) => got.push(r))
    reader.push(bytes.subarray(cut), (r) => got.push(r))
    t.equal(reader.partial, false)
    t.same(
      got.map((r) => r.code),
      [220, 250, 354],
      `cut at ${cut}`,
    )
  }
})

t.test('the reader handles one byte at a time and grows past its initial buffer', async (t) => {
  const long = 'x'.repeat(3000)
  const bytes = Buffer.from(`250-${long}\r\n250 ${long}\r\n`)
  const got: SmtpReply[] = []
  const reader = new ReplyReader()
  for (let i = 0; i < bytes.length; i++) reader.push(bytes.subarray(i, i + 1), (r) => got.push(r))
  t.same(got, [{ code: 250, enhanced: null, lines: [long, long] }])
})

t.test('the reader refuses an endless line instead of buffering it', async (t) => {
  const reader = new ReplyReader()
  t.throws(() => reader.push(Buffer.alloc(10_000, 0x41), () => {}), { code: 'EREPLYPARSE', message: /longer than/ })
})

t.test('utf-8 reply text survives', async (t) => {
  t.same(parseReply('550 5.1.1 Empfänger unbekannt'), { code: 550, enhanced: '5.1.1', lines: ['Empfänger unbekannt'] })
})
