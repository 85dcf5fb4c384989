import t from 'tap'
import { BENCH_TO, buildCommands, buildMessageWire } from '../src/bench/message'

t.test(
  'a built message has exactly the asked size, CRLF lines, no leading dot, and ends with the dot line',
  async (t) => {
    for (const size of [400, 401, 479, 480, 481, 5120, 102400]) {
      const wire = buildMessageWire(size)
      t.equal(wire.length, size + 3, `${size}: the size excludes only the ".\\r\\n" terminator`)
      const text = wire.toString('latin1')
      t.ok(text.endsWith('\r\n.\r\n'), `${size}: the dot stands on its own line`)
      const lines = text.slice(0, -3).split('\r\n').slice(0, -1)
      t.notOk(/\r(?!\n)|(?<!\r)\n/.test(text), `${size}: no bare CR or LF`)
      t.notOk(
        lines.some((l) => l.startsWith('.')),
        `${size}: no line needs dot-stuffing`,
      )
      t.ok(
        lines.every((l) => l.length <= 998),
        `${size}: no line is over the SMTP limit`,
      )
    }
  },
)

t.test('a size below the headers is refused', async (t) => {
  t.throws(() => buildMessageWire(100), RangeError)
})

t.test('the pipelined group is MAIL, RCPT and DATA in one buffer', async (t) => {
  const c = buildCommands()
  t.equal(c.pipelined.toString(), c.mail.toString() + c.rcpt.toString() + c.data.toString())
  t.match(c.rcpt.toString(), `RCPT TO:<${BENCH_TO}>\r\n`)
})
