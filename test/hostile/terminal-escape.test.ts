// Nothing a backend or a sender chose reaches the operator's terminal raw: control characters in replies, addresses
// and reasons are escaped in `mxgate status`, `spool ls` and `spool show` (ANSI/OSC escape injection), and the node's
// log lines stay one JSON line each.
import t from 'tap'
import { runOpsCommand } from '../../src/cli/ops'
import { safeText, terminalJson } from '../../src/cli/terminal-text'
import { makeTestMessage } from '../../src/testing/smtp-sender'
import { backendView, MemoryAdminPort, spoolItem, startTestAdmin, TEST_TOKEN } from '../admin-helpers'
import { runMxgate } from '../helpers/mxgate-process'
import { backend, configDir, eventually, send, spoolList, startNode, tempDir } from '../helpers/spool-e2e'

const ESC = '\u001b'
// Clears the screen, sets the window title, rings the bell, starts a fake prompt on a new line.
const HOSTILE = `451 4.3.0 busy\r\n${ESC}[2J${ESC}]0;pwned\u0007\u009b31m$ rm -rf /\u202e`
const ESCAPED = '451 4.3.0 busy\\r\\n\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m$ rm -rf /\\u202e'

/** True when `s` holds a control character other than the newlines that end our own lines. */
function hasRawControl(s: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
  return /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(s)
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runOpsCommand(argv[0]!, argv.slice(1), {
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
    env: { MXGATE_ADMIN_TOKEN: TEST_TOKEN },
    tokenFile: null,
  })
  return { code, out: out.join(''), err: err.join('') }
}

t.test('safeText writes every control character as an escape', async (t) => {
  t.equal(safeText(HOSTILE), ESCAPED)
  t.equal(safeText('tab\there\u0000\u007f'), 'tab\\there\\x00\\x7f')
  t.equal(safeText('ünïcödé <bob@example.com>'), 'ünïcödé <bob@example.com>', 'printable text is untouched')
  const json = terminalJson({ e: HOSTILE })
  t.notOk(hasRawControl(json), 'JSON output holds no raw control character')
  t.same(JSON.parse(json), { e: HOSTILE }, 'and still parses to the same value')
})

t.test('spool ls, spool show and status escape what the node sends', async (t) => {
  const port = new MemoryAdminPort([
    backendView('mx1', { state: 'ejected', reason: `evidence${ESC}[8m hidden\r\nfake line` }),
  ])
  port.messages.set('m1', {
    ...spoolItem('m1', {
      from: `eve${ESC}[2J@evil.example`,
      to: ['bob@example.com\r\nX-Injected: yes'],
      pending: ['bob@example.com\r\nX-Injected: yes'],
      lastError: `mx2: ${HOSTILE}`,
    }),
    lastErrors: [{ backendId: 'mx2', stage: 'rcpt', message: HOSTILE, at: Date.now() }],
  })
  const { url } = await startTestAdmin(t, { port })
  const ls = await run(['spool', 'ls', '--admin', url])
  t.equal(ls.code, 0, ls.err)
  t.notOk(hasRawControl(ls.out), 'spool ls: no raw control character')
  t.match(ls.out, `mx2: ${ESCAPED}`)
  const show = await run(['spool', 'show', 'm1', '--admin', url])
  t.equal(show.code, 0, show.err)
  t.notOk(hasRawControl(show.out), 'spool show: no raw control character')
  t.match(show.out, `  from       eve\\x1b[2J@evil.example\n`)
  t.match(show.out, `  to         bob@example.com\\r\\nX-Injected: yes\n`)
  t.match(show.out, `mx2 at rcpt: ${ESCAPED}\n`)
  t.equal(show.out.split('\n').length, 11, 'one line per field: nothing started a line of its own')
  const json = await run(['spool', 'show', 'm1', '--json', '--admin', url])
  t.notOk(hasRawControl(json.out), 'spool show --json: no raw control character')
  const status = await run(['status', '--admin', url])
  t.notOk(hasRawControl(status.out), 'status: no raw control character')
  t.match(status.out, 'evidence\\x1b[8m hidden\\r\\nfake line')
})

t.test('a real backend reply with control characters: spool ls/show escape it, the log line stays JSON', async (t) => {
  // A 4xx whose text carries ESC/OSC/BEL sequences and a bare CR, as a hostile backend could send.
  const evil = `451 4.3.0 evil\r${ESC}]0;owned\u0007${ESC}[2J tail`
  const mx = await backend(t, { id: 'mx1', faults: [{ stage: 'rcpt', action: 'reply', reply: evil }] })
  const spoolDir = tempDir(t, 'mxgate-escape-')
  const ini = '[breaker]\nmin_volume = 1000\n[spool]\nretry_first = 1h\nretry_max = 2h\n'
  const node = await startNode(t, { backends: [mx], config: configDir(t, ini), spoolDir })
  let raw = ''
  node.proc.proc.stdout?.on('data', (d: Buffer) => {
    raw += d.toString('utf8')
  })
  const r = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'escape@test' }))
  t.match(r.reply, /^250 /, 'spooled')
  t.ok(await eventually(async () => (await spoolList(node)).some((m) => m.lastError !== null), 10_000))
  const [item] = await spoolList(node)
  t.match(
    item?.lastError,
    new RegExp(ESC.replace('\u001b', '\\u001b')),
    'the API keeps the reply as the backend sent it',
  )

  const cli = (...args: string[]) =>
    runMxgate([...args, '--admin', node.adminUrl, '--token-file', node.tokenFile], { MXGATE_ADMIN_TOKEN: '' })
  const ls = await cli('spool', 'ls')
  t.equal(ls.code, 0, ls.stderr)
  t.notOk(hasRawControl(ls.stdout), `spool ls shows no raw control character: ${JSON.stringify(ls.stdout)}`)
  t.match(ls.stdout, '\\x1b]0;owned\\x07\\x1b[2J tail')
  const show = await cli('spool', 'show', item?.id ?? '')
  t.equal(show.code, 0, show.stderr)
  t.notOk(hasRawControl(show.stdout), `spool show shows no raw control character: ${JSON.stringify(show.stdout)}`)
  t.match(show.stdout, 'evil\\r\\x1b]0;owned\\x07\\x1b[2J tail')

  await eventually(() => raw.includes('owned'), 2000)
  const lines = raw.split('\n').filter((l) => l.includes('owned'))
  t.ok(lines.length > 0, 'the reply is logged')
  for (const l of lines) {
    t.notOk(hasRawControl(l), 'pino escapes it: no raw control character in the log line')
    t.doesNotThrow(() => JSON.parse(l), 'and the line is one JSON object')
  }
})
