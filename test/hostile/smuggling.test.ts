// SMTP smuggling: only <CRLF>.<CRLF> ends DATA. A message carrying another end-of-data form followed by a second
// envelope must not reach a backend that might split it differently: bare CR and NUL are refused with 554 5.6.0,
// bare LF by Haraka itself, and commands pipelined after the end of DATA are refused.
import net from 'node:net'
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'

/**
 * Says EHLO after the greeting, then writes `data` once the EHLO reply came (a client may pipeline only after it saw
 * PIPELINING offered): the envelope up to DATA in one go, the rest in one go after the 354 (content sent before it
 * is refused, see early-content.test.ts). Collects complete replies until `want` arrived or the peer closed.
 */
async function converse(port: number, data: string, want: number): Promise<string[]> {
  const s = net.connect(port, '127.0.0.1')
  let buf = ''
  const replies: string[] = []
  let sent = false
  let contentSent = false
  let ehloSent = false
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`timed out; replies so far: ${JSON.stringify(replies)}; buffered: ${JSON.stringify(buf)}`))
    }, 15_000)
    const done = () => {
      clearTimeout(timer)
      s.destroy()
      resolve(replies)
    }
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      let i = buf.indexOf('\n')
      while (i !== -1) {
        const line = buf.slice(0, i).replace(/\r$/, '')
        buf = buf.slice(i + 1)
        if (/^\d{3} /.test(line)) replies.push(line)
        i = buf.indexOf('\n')
      }
      if (replies.length === 1 && !ehloSent) {
        ehloSent = true
        s.write('EHLO attacker.test\r\n')
      }
      // After the EHLO reply, the envelope at once; after the 354, everything else at once: the hostile client
      // pipelines the rest of the dialogue behind its message.
      const cut = data.indexOf('DATA\r\n') + 'DATA\r\n'.length
      if (!sent && replies.length >= 2) {
        sent = true
        s.write(Buffer.from(data.slice(0, cut), 'latin1'))
      }
      if (!contentSent && replies.length >= 5 && replies[4]?.startsWith('354')) {
        contentSent = true
        s.write(Buffer.from(data.slice(cut), 'latin1'))
      }
      if (replies.length >= want) done()
    })
    s.on('close', done)
    s.on('error', () => done())
  })
}

const SMUGGLED = 'MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx'

/** The public end-of-data variants (SEC Consult's list and its kin) that are not <CRLF>.<CRLF>. */
const VARIANTS: [string, string, RegExp][] = [
  ['<LF>.<LF>', '\n.\n', /^554 5\.6\.0 .*bare LF/],
  ['<LF>.<CRLF>', '\n.\r\n', /^554 5\.6\.0 .*bare LF/],
  ['<CRLF>.<LF>', '\r\n.\n', /^554 5\.6\.0 .*bare LF/],
  ['<CR>.<CR>', '\r.\r', /^554 5\.6\.0 .*bare CR/],
  ['<CR>.<CRLF>', '\r.\r\n', /^554 5\.6\.0 .*bare CR/],
  ['<CRLF>.<CR>', '\r\n.\r', /^554 5\.6\.0 .*bare CR/],
  ['<CR>.<LF>', '\r.\n', /^(554 5\.6\.0 .*bare CR|554 5\.6\.0 .*bare LF)/],
  ['<LF>.<CR>', '\n.\r', /^(554 5\.6\.0 .*bare CR|554 5\.6\.0 .*bare LF)/],
  ['<CRLF>.<NUL><CRLF>', '\r\n.\0\r\n', /^554 5\.6\.0 .*NUL/],
  ['<CRLF><NUL>.<CRLF>', '\r\n\0.\r\n', /^554 5\.6\.0 .*NUL/],
  ['<CR><NUL>.<CRLF>', '\r\0.\r\n', /^554 5\.6\.0 /],
  ['a bare CR inside a line', 'line with a \r in it\r\n', /^554 5\.6\.0 .*bare CR/],
]

t.test('no end-of-data variant smuggles a message, and none of them reaches a backend', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())

  for (const [name, seq, expected] of VARIANTS) {
    const dialogue =
      'MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n' +
      `Subject: first\r\n\r\nhello${seq}${SMUGGLED}\r\n.\r\nQUIT\r\n`
    // banner, EHLO, MAIL, RCPT, 354, then the verdict on the message
    const replies = await converse(m.port, dialogue, 6)
    t.match(replies[5] ?? `(closed after ${JSON.stringify(replies)})`, expected, `${name}: ${replies[5]}`)
  }
  t.equal(b.received.length, 0, 'nothing reached the backend')
  t.equal(b.counters.messages, 0)
})

t.test('a clean message still goes through, and commands pipelined after its end are refused', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const dialogue =
    'MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n' +
    `Subject: first\r\n\r\nhello\r\n.\r\n${SMUGGLED}\r\n.\r\n`
  // banner, EHLO, MAIL, RCPT, 354, 250 for the message, then 503 for each pipelined command
  const replies = await converse(m.port, dialogue, 9)
  t.match(replies[5], /^250 2\.0\.0 /)
  t.same(replies.slice(6, 9), [
    '503 Bad sequence of commands - pipelined after end of DATA',
    '503 Bad sequence of commands - pipelined after end of DATA',
    '503 Bad sequence of commands - pipelined after end of DATA',
  ])
  t.equal(b.received.length, 1, 'only the first message reached the backend')
  t.same(b.received[0]?.to, ['a@example.com'])
  t.notMatch(b.received[0]?.raw.toString('latin1') ?? '', /smuggled/)
})
