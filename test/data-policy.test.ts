// DATA bytes mxgate refuses: exactly NUL anywhere and a CR that is not the one before the line's final LF.
import t from 'tap'
import { dataFaultReply, dataLineFault } from '../src/inbound/data-policy'

t.test('dataLineFault finds NUL and bare CR, and nothing in clean lines', async (t) => {
  const cases: [string, ReturnType<typeof dataLineFault>][] = [
    ['hello\r\n', null],
    ['\r\n', null],
    ['.\r\n', null],
    ['..dot-stuffed\r\n', null],
    ['8-bit \xe9\xff bytes\r\n', null],
    ['a\0b\r\n', 'NUL'],
    ['\0\r\n', 'NUL'],
    ['a\rb\r\n', 'bare CR'],
    ['\r.\r\n', 'bare CR'],
    ['a\r\r\n', 'bare CR'],
    ['ends in CR\r', 'bare CR'],
    ['a\r\0\r\n', 'NUL'],
  ]
  for (const [line, want] of cases) t.equal(dataLineFault(Buffer.from(line, 'latin1')), want, JSON.stringify(line))
})

t.test('the refusal is permanent and says what was wrong', async (t) => {
  t.same(dataFaultReply('NUL'), {
    code: 554,
    enhanced: '5.6.0',
    text: 'Message refused: it contains a NUL byte; lines must end in CRLF and carry no NUL (RFC 5321 2.3.8)',
  })
  t.match(dataFaultReply('bare CR').text, 'a bare CR (one not followed by LF)')
})
