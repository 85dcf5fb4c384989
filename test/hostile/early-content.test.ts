// Message content sent before the 354 reply to DATA (RFC 2920 §3.1: DATA ends a pipelined group). Haraka reads such
// content with the command line limit and wraps each line past 512 bytes, so the backend would get a message other
// than the one sent: mxgate refuses the client instead (as Postfix 3.9's smtpd_forbid_unauth_pipelining does). A
// client that waits for 354 keeps its long lines intact. Found by the fuzz run (fuzz.test.ts).
import net from 'node:net'
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'

/** Writes each chunk once `waits[i]` final replies have arrived in all; resolves every reply line on close. */
async function dialogue(port: number, chunks: [number, string][]): Promise<string[]> {
  const s = net.connect(port, '127.0.0.1')
  const lines: string[] = []
  let buf = ''
  let finals = 0
  let i = 0
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`timed out: ${JSON.stringify(lines)}`))
    }, 15_000)
    const pump = () => {
      while (i < chunks.length && finals >= (chunks[i] as [number, string])[0])
        s.write((chunks[i++] as [number, string])[1])
    }
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      for (let lf = buf.indexOf('\r\n'); lf >= 0; lf = buf.indexOf('\r\n')) {
        const line = buf.slice(0, lf)
        buf = buf.slice(lf + 2)
        lines.push(line)
        if (/^\d{3} /.test(line)) finals++
      }
      pump()
    })
    s.on('close', () => {
      clearTimeout(timer)
      resolve(lines)
    })
    s.on('error', () => undefined)
  })
}

const LONG = `${'L'.repeat(2000)}\r\n`
const ENVELOPE = 'MAIL FROM:<s@sender.test>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n'
const BODY = `Subject: long line\r\n\r\n${LONG}.\r\n`

t.test('content sent before the 354 is refused; content after it keeps its long lines', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())

  const early = await dialogue(m.port, [
    [1, 'EHLO early.test\r\n'],
    [2, `${ENVELOPE}${BODY}QUIT\r\n`],
  ])
  t.match(
    early.at(-1),
    /^554 5\.5\.1 Protocol error: message content sent before the 354 reply to DATA/,
    early.join(' | '),
  )
  t.notOk(
    early.some((l) => l.startsWith('354')),
    'no 354 for the early sender',
  )
  t.equal(b.received.length, 0, 'nothing reached the backend')

  const patient = await dialogue(m.port, [
    [1, 'EHLO patient.test\r\n'],
    [2, ENVELOPE],
    [5, BODY],
    [6, 'QUIT\r\n'],
  ])
  const codes = patient.filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3))
  t.same(codes, ['220', '250', '250', '250', '354', '250', '221'], patient.join(' | '))
  t.equal(b.received.length, 1, 'the patient sender’s message reached the backend')
  t.ok(b.received[0]?.wire.includes(Buffer.from(`\r\n${LONG}`)), 'its 2000-byte line unwrapped')
})
