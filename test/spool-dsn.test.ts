import t from 'tap'
import { buildDsn, type DsnInput, dsnAllowed, headerSection, rfc5322Date } from '../src/spool/dsn'
import { DsnError } from '../src/spool/errors'

const origHeaders = Buffer.from(
  'Received: from a by b\r\nFrom: Alice <alice@example.org>\r\nSubject: Lunch\r\nMessage-ID: <m1@example.org>\r\n',
)

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx1.example.com',
    originalEnvelope: { from: 'alice@example.org', to: ['bob@example.com', 'carol@example.com'] },
    failedRecipients: [
      { rcpt: 'bob@example.com', status: '5.1.1', diagnostic: '550 5.1.1 <bob@example.com>: no such user' },
    ],
    arrivalDate: Date.UTC(2024, 2, 5, 10, 0, 0),
    originalHeaders: origHeaders,
    messageId: 'dsn-1@mx1.example.com',
    date: Date.UTC(2024, 2, 6, 11, 30, 0),
    boundary: 'BOUNDARY',
    ...over,
  }
}

/** Split a wire-form DSN into its top header block and MIME parts (each: headers, body). */
function parse(dsn: Buffer) {
  const text = dsn.toString('utf8')
  const [top, rest] = splitOnce(text, '\r\n\r\n')
  const sections = rest.split('--BOUNDARY')
  const parts = sections.slice(1, -1).map((p) => {
    const [h = '', b = ''] = splitOnce(p.replace(/^\r\n/, ''), '\r\n\r\n')
    return { headers: h, body: b }
  })
  return { text, top, parts, closing: sections.at(-1) ?? '' }
}

function splitOnce(s: string, sep: string): [string, string] {
  const i = s.indexOf(sep)
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + sep.length)]
}

t.test('a DSN is a multipart/report from MAILER-DAEMON with three parts in RFC 3464 order', async (t) => {
  const { top, parts, closing } = parse(buildDsn(input()))
  t.match(top, /^From: Mail Delivery System <MAILER-DAEMON@mx1\.example\.com>\r\n/m)
  t.match(top, /^To: <alice@example\.org>$/m)
  t.match(top, /^Subject: Undelivered Mail Returned to Sender$/m)
  t.match(top, /^Date: Wed, 06 Mar 2024 11:30:00 \+0000$/m)
  t.match(top, /^Message-ID: <dsn-1@mx1\.example\.com>$/m)
  t.match(top, /^Auto-Submitted: auto-replied$/m, 'marked automatic (RFC 3834)')
  t.match(top, /^MIME-Version: 1\.0$/m)
  t.match(top, /Content-Type: multipart\/report; report-type=delivery-status;\r\n\tboundary="BOUNDARY"/)
  t.equal(parts.length, 3)
  t.match(parts[0]?.headers, /Content-Type: text\/plain/)
  t.match(parts[0]?.body, /<bob@example\.com>: 550 5\.1\.1/)
  t.match(parts[1]?.headers, /Content-Type: message\/delivery-status/)
  t.match(parts[2]?.headers, /Content-Type: text\/rfc822-headers/)
  t.match(parts[2]?.body, /^Received: from a by b\r\nFrom: Alice <alice@example\.org>\r\n/)
  t.match(parts[2]?.body, /Message-ID: <m1@example\.org>/)
  t.equal(closing, '--\r\n', 'closing boundary ends the message')
})

t.test('the delivery-status part has per-message fields, then one block per recipient', async (t) => {
  const dsn = buildDsn(
    input({
      failedRecipients: [
        { rcpt: 'bob@example.com', status: '5.1.1', diagnostic: '550 5.1.1 no such user' },
        { rcpt: 'carol@example.com', status: '4.4.7', diagnostic: 'retry timeout exceeded' },
      ],
    }),
  )
  const status = parse(dsn).parts[1]?.body ?? ''
  const [perMessage = '', ...perRcpt] = status.trimEnd().split('\r\n\r\n')
  t.same(perMessage.split('\r\n'), [
    'Reporting-MTA: dns; mx1.example.com',
    'Arrival-Date: Tue, 05 Mar 2024 10:00:00 +0000',
  ])
  t.same(perRcpt[0]?.split('\r\n'), [
    'Final-Recipient: rfc822; bob@example.com',
    'Action: failed',
    'Status: 5.1.1',
    'Diagnostic-Code: smtp; 550 5.1.1 no such user',
  ])
  t.match(perRcpt[1], /Action: delayed\r\nStatus: 4\.4\.7/, 'a 4.x.x status is reported as delayed')
})

t.test('a DSN for only delayed recipients says so in its subject', async (t) => {
  const dsn = buildDsn(input({ failedRecipients: [{ rcpt: 'b@x.org', status: '4.4.1', diagnostic: 'no answer' }] }))
  t.match(parse(dsn).top, /^Subject: Delayed Mail \(still being retried\)$/m)
})

t.test(
  'a recipient given up with a temporary status (4.4.7, expired) is reported as failed, not delayed',
  async (t) => {
    const dsn = buildDsn(
      input({
        failedRecipients: [
          { rcpt: 'bob@example.com', status: '4.4.7', diagnostic: 'delivery time expired', action: 'failed' },
        ],
      }),
    ).toString()
    t.match(dsn, /\r\nAction: failed\r\nStatus: 4\.4\.7\r\n/)
    t.match(dsn, /Subject: Undelivered Mail Returned to Sender/)
    t.notMatch(dsn, /will keep trying/)
  },
)

t.test('the DSN is in wire form: CRLF only, dot-stuffed, no terminating dot', async (t) => {
  const headers = Buffer.from('Subject: x\n.hidden: dot line\r\nX-Bare: cr\r')
  const dsn = buildDsn(input({ originalHeaders: headers }))
  const s = dsn.toString('latin1')
  t.notMatch(s, /[^\r]\n/, 'no bare LF')
  t.notMatch(s, /\r[^\n]/, 'no bare CR')
  t.match(s, /\r\n\.\.hidden: dot line\r\n/, 'a line starting with a dot is stuffed')
  t.notMatch(s, /\r\n\.\r\n/, 'no line is a lone dot')
  t.ok(s.endsWith('--BOUNDARY--\r\n'))
})

t.test('no DSN for the null sender; nothing to report is an error too', async (t) => {
  t.equal(dsnAllowed({ from: '', to: ['a@b'] }), false)
  t.equal(dsnAllowed({ from: 'a@b', to: ['c@d'] }), true)
  t.throws(() => buildDsn(input({ originalEnvelope: { from: '', to: ['bob@example.com'] } })), DsnError)
  t.throws(() => buildDsn(input({ originalEnvelope: { from: '', to: ['b@x'] } })), { code: 'EDSN', message: /null/ })
  t.throws(() => buildDsn(input({ failedRecipients: [] })), { code: 'EDSN' })
  t.throws(() => buildDsn(input({ failedRecipients: [{ rcpt: 'b@x', status: '550', diagnostic: 'x' }] })), {
    code: 'EDSN',
    message: /RFC 3463/,
  })
})

t.test('text from the remote server cannot inject header lines', async (t) => {
  const dsn = buildDsn(
    input({
      failedRecipients: [{ rcpt: 'b@x.org', status: '5.0.0', diagnostic: '550 bad\r\nBcc: victim@example.net' }],
    }),
  )
  t.notMatch(dsn.toString(), /^Bcc:/m)
  t.match(dsn.toString(), /Diagnostic-Code: smtp; 550 bad Bcc: victim@example\.net\r\n/)
})

t.test('8-bit content is labelled 8bit; an internationalized address uses the utf-8 type', async (t) => {
  const dsn = buildDsn(
    input({
      failedRecipients: [{ rcpt: 'jörg@example.de', status: '5.1.1', diagnostic: 'unknown' }],
      originalHeaders: Buffer.from('Subject: Grüße\r\n'),
    }),
  )
  const { parts } = parse(dsn)
  t.match(parts[1]?.body, /Final-Recipient: utf-8; jörg@example\.de/)
  t.match(parts[2]?.headers, /Content-Transfer-Encoding: 8bit/)
  t.match(parts[2]?.body, /Subject: Grüße/)
})

t.test('headerSection() takes the header block from a wire-form body and undoes dot-stuffing', async (t) => {
  const wire = Buffer.from('Subject: a\r\n..X-Odd: 1\r\n\r\nbody\r\n..line\r\n')
  t.equal(headerSection(wire).toString(), 'Subject: a\r\n.X-Odd: 1\r\n')
  t.equal(headerSection(Buffer.from('\r\nbody only\r\n')).toString(), '')
  t.equal(headerSection(Buffer.from('Subject: no body\r\n')).toString(), 'Subject: no body\r\n')
  t.equal(rfc5322Date(Date.UTC(2024, 0, 1, 0, 0, 0)), 'Mon, 01 Jan 2024 00:00:00 +0000')
})
