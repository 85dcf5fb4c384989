// Address redaction for log lines, and Haraka's JSON lines turned into pino fields.
import t from 'tap'
import { harakaRecord } from '../src/haraka/haraka-log'
import { redactFields, redactText } from '../src/log-redact'

t.test('the local part goes, the domain stays', async (t) => {
  t.equal(redactText('from <joe.bloggs+tag@example.com> to x@[192.0.2.1]'), 'from <***@example.com> to ***@[192.0.2.1]')
  t.equal(redactText('550 5.1.1 <nobody@example.com>: no such user'), '550 5.1.1 <***@example.com>: no such user')
  t.equal(redactText('no address here'), 'no address here')
  t.same(
    redactFields({
      from: 'a@b.test',
      refused: ['c@d.test', 'e@f.test'],
      n: 3,
      nested: { params: { user: 'joe', host: 'example.com', original: '<joe@example.com>' } },
      state: 'ejected',
    }),
    {
      from: '***@b.test',
      refused: ['***@d.test', '***@f.test'],
      n: 3,
      nested: { params: { user: '***', host: 'example.com', original: '<***@example.com>' } },
      state: 'ejected',
    },
  )
  const err = new Error('RCPT <x@y.test> refused')
  t.same(redactFields({ err }), { err: { type: 'Error', message: 'RCPT <***@y.test> refused', code: undefined } })
})

t.test("Haraka's JSON lines become fields and a message; clashing names are prefixed", async (t) => {
  t.same(harakaRecord('{"level":"INFO","uuid":"u-1","origin":"core","message":"connect ip=192.0.2.1","msg":"ok"}'), {
    fields: { uuid: 'u-1', origin: 'core', haraka_msg: 'ok' },
    msg: 'connect ip=192.0.2.1',
  })
  t.same(harakaRecord('plain text line'), { fields: {}, msg: 'plain text line' })
  t.same(harakaRecord('{not json'), { fields: {}, msg: '{not json' })
})
