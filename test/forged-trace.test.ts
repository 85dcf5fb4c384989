// Forged Authentication-Results: fields claiming our authserv-id are renamed, everything else is left byte for byte.
import t from 'tap'
import { authservId, renameForgedAuthResults } from '../src/inbound/forged-trace'

const lines = (s: string) => s.split(/(?<=\r\n)/).map((l) => Buffer.from(l, 'latin1'))
const text = (b: Buffer[]) => Buffer.concat(b).toString('latin1')

t.test('authservId reads the id before the first ; or space, skipping comments', async (t) => {
  t.equal(authservId(' mxgate.localdomain; dkim=pass'), 'mxgate.localdomain')
  t.equal(authservId(' MXGATE.localdomain 1; none'), 'mxgate.localdomain')
  t.equal(authservId(' (comment) mx.example.com;spf=pass'), 'mx.example.com')
  t.equal(authservId('\r\n\tmx.example.com; spf=pass'), 'mx.example.com')
  t.equal(authservId(''), '')
})

t.test('only our ids are renamed, in the header section only, folded values included', async (t) => {
  const msg = lines(
    'Received: by mxgate\r\n' +
      'Authentication-Results: mxgate.localdomain; dkim=pass header.d=bank.test\r\n' +
      'authentication-results: other.test; spf=fail\r\n' +
      'AUTHENTICATION-RESULTS:\r\n' +
      '\tmx1.example.com;\r\n' +
      '\tdmarc=pass\r\n' +
      'Subject: hi\r\n' +
      '\r\n' +
      'Authentication-Results: mxgate.localdomain; in the body, untouched\r\n',
  )
  const n = renameForgedAuthResults(msg, ['mxgate.localdomain', 'mx1.example.com'], 1)
  t.equal(n, 2)
  t.equal(
    text(msg),
    'Received: by mxgate\r\n' +
      'X-Mxgate-Forged-Authentication-Results: mxgate.localdomain; dkim=pass header.d=bank.test\r\n' +
      'authentication-results: other.test; spf=fail\r\n' +
      'X-Mxgate-Forged-Authentication-Results:\r\n' +
      '\tmx1.example.com;\r\n' +
      '\tdmarc=pass\r\n' +
      'Subject: hi\r\n' +
      '\r\n' +
      'Authentication-Results: mxgate.localdomain; in the body, untouched\r\n',
  )
})

t.test('a name followed by spaces or tabs before its colon is the same field; a longer name is not', async (t) => {
  const msg = lines(
    'Authentication-Results : mxgate.localdomain; dkim=pass\r\n' +
      'Authentication-Results\t \t:mxgate.localdomain; spf=pass\r\n' +
      'Authentication-Results-Copy: mxgate.localdomain; dkim=pass\r\n' +
      'Authentication-Results x: mxgate.localdomain; dkim=pass\r\n' +
      'Authentication-Results\r\n' +
      '\r\n',
  )
  t.equal(renameForgedAuthResults(msg, ['mxgate.localdomain']), 2)
  t.equal(
    text(msg),
    'X-Mxgate-Forged-Authentication-Results: mxgate.localdomain; dkim=pass\r\n' +
      'X-Mxgate-Forged-Authentication-Results:mxgate.localdomain; spf=pass\r\n' +
      'Authentication-Results-Copy: mxgate.localdomain; dkim=pass\r\n' +
      'Authentication-Results x: mxgate.localdomain; dkim=pass\r\n' +
      'Authentication-Results\r\n' +
      '\r\n',
  )
})

t.test('a message without such fields is left as it is, the same buffers', async (t) => {
  const msg = lines('Subject: x\r\nFrom: a@b.test\r\n\r\nbody\r\n')
  const before = [...msg]
  t.equal(renameForgedAuthResults(msg, ['mxgate.localdomain']), 0)
  for (const [i, b] of msg.entries()) t.equal(b, before[i], `line ${i} is the same buffer`)
})
