// The DSN mxgate builds quotes backend replies and envelope addresses into header fields (To:, Final-Recipient:,
// Diagnostic-Code:): a CR, LF or other control character in them must not start a header line of its own.
import t from 'tap'
import { buildDsn } from '../../src/spool/dsn'

const CRLF = '\r\n'

function dsnFor(from: string, rcpt: string, diagnostic: string): string {
  return buildDsn({
    reportingMta: 'mx1.example.com',
    originalEnvelope: { from, to: [rcpt] },
    failedRecipients: [{ rcpt, status: '5.1.1', diagnostic }],
    arrivalDate: Date.UTC(2024, 2, 5, 10, 0, 0),
    originalHeaders: Buffer.from(`Subject: hi${CRLF}`),
    messageId: 'dsn-1@mx1.example.com',
    date: Date.UTC(2024, 2, 6, 11, 30, 0),
    boundary: 'BOUNDARY',
  }).toString('utf8')
}

// Each hostile value tries to add a header line (Bcc:, X-Injected:), end the header early, or smuggle a bare CR/LF.
const HOSTILE = [
  `${CRLF}Bcc: victim@evil.example`,
  `\nX-Injected: lf`,
  `\rX-Injected: cr`,
  `${CRLF}${CRLF}<html>body takeover`,
  `\u0000\u001b[2J\u007f`,
]

t.test('a CR/LF in a backend reply or an address cannot inject a header line into the DSN', async (t) => {
  for (const evil of HOSTILE) {
    const dsn = dsnFor(`alice${evil}@example.org`, `bob${evil}@example.com`, `550 5.1.1 no such user${evil}`)
    const lines = dsn.split(CRLF)
    const label = JSON.stringify(evil)
    t.notOk(
      lines.some((l) => /^(Bcc|X-Injected):/i.test(l) || l.startsWith('<html>')),
      `${label}: no injected line`,
    )
    // No stray CR or LF: every line break in the DSN is a CRLF we wrote.
    t.notOk(/\r(?!\n)|(?<!\r)\n/.test(dsn), `${label}: no bare CR or LF`)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is checked for
    t.notOk(/[\u0000-\u0008\u000b-\u001f\u007f]/.test(dsn.replace(/\r\n/g, '')), `${label}: no control character`)
    const to = lines.find((l) => l.startsWith('To: '))
    t.match(to, /^To: <alice.*@example\.org>$/, `${label}: To: stays one line`)
    const diag = lines.find((l) => l.startsWith('Diagnostic-Code: '))
    t.match(diag, /^Diagnostic-Code: smtp; 550 5\.1\.1 no such user/, `${label}: Diagnostic-Code: stays one line`)
    const rcpt = lines.find((l) => l.startsWith('Final-Recipient: '))
    t.match(rcpt, /^Final-Recipient: rfc822; bob.*@example\.com$/, `${label}: Final-Recipient: stays one line`)
  }
})

t.test('the quoted reply keeps its text on one line: CR/LF become spaces', async (t) => {
  const dsn = dsnFor('alice@example.org', 'bob@example.com', `550 5.1.1 first line${CRLF}550 5.1.1 second line`)
  t.match(dsn, `Diagnostic-Code: smtp; 550 5.1.1 first line 550 5.1.1 second line${CRLF}`)
  t.match(dsn, `<bob@example.com>: 550 5.1.1 first line 550 5.1.1 second line${CRLF}`)
})
