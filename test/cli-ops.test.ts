// The operator commands, run in-process against a real admin server on loopback: output, exit codes, and one clear
// stderr line for every error path.
import http from 'node:http'
import t from 'tap'
import { formatAgo, formatBytes, formatIn, formatSpan } from '../src/cli/duration'
import type { OpsIo } from '../src/cli/ops'
import { runOpsCommand } from '../src/cli/ops'
import { nodesText, reloadText } from '../src/cli/reload-detail'
import { renderTable, wantsColour } from '../src/cli/table'
import { backendView, MemoryAdminPort, spoolItem, startTestAdmin, TEST_TOKEN } from './admin-helpers'
import { freePort, waitFor } from './helpers/ports'

const TOKEN = 'cli-test-token-93ab'
const ESC = '\u001b['

interface Captured {
  io: OpsIo
  out(): string
  err(): string
}

function capture(
  over: { isTTY?: boolean; columns?: number; env?: NodeJS.ProcessEnv } = {},
  extra: Partial<OpsIo> = {},
): Captured {
  const out: string[] = []
  const err: string[] = []
  const stdout: OpsIo['stdout'] = { write: (s: string) => out.push(s) }
  if (over.isTTY !== undefined) stdout.isTTY = over.isTTY
  if (over.columns !== undefined) stdout.columns = over.columns
  // The test admin's token unless a test sets the environment; never a token file from this machine.
  return {
    io: {
      stdout,
      stderr: { write: (s: string) => err.push(s) },
      env: over.env ?? { MXGATE_ADMIN_TOKEN: TEST_TOKEN },
      tokenFile: null,
      ...extra,
    },
    out: () => out.join(''),
    err: () => err.join(''),
  }
}

async function run(cmd: string, argv: string[], c = capture()): Promise<{ code: number; out: string; err: string }> {
  const code = await runOpsCommand(cmd, argv, c.io)
  return { code, out: c.out(), err: c.err() }
}

function fleet(): MemoryAdminPort {
  const now = Date.now()
  return new MemoryAdminPort([
    backendView('mx1', { since: now - 190_000, inFlight: 4, successRatio: 0.9991, messagesPerMinute: 310.4 }),
    backendView('mx2', {
      state: 'ejected',
      reason: 'failure ratio 3.1% vs pool 0.2% over 400 attempts',
      since: now - 7_300_000,
      until: now + 600_000,
      successRatio: 0.969,
      messagesPerMinute: 2.5,
    }),
    backendView('mx3', { state: 'probation', since: now - 5_000, successRatio: null, messagesPerMinute: 0 }),
  ])
}

t.test('duration and size formats', async (t) => {
  t.equal(formatSpan(45_000), '45s')
  t.equal(formatSpan(190_000), '3m')
  t.equal(formatSpan(3_900_000), '1h 5m')
  t.equal(formatSpan(7_200_000), '2h')
  t.equal(formatSpan(187_200_000), '2d 4h')
  t.equal(formatAgo(1000, 1500), 'just now')
  t.equal(formatAgo(0, 61_000), '1m ago')
  t.equal(formatIn(600_000, 0), 'in 10m')
  t.equal(formatIn(0, 5000), 'now')
  t.equal(formatBytes(512), '512 B')
  t.equal(formatBytes(2048), '2.0 KB')
  t.equal(formatBytes(3.5 * 1024 * 1024), '3.5 MB')
})

t.test('colour only on a TTY, never with NO_COLOR or TERM=dumb', async (t) => {
  t.equal(wantsColour(true, {}), true)
  t.equal(wantsColour(false, {}), false)
  t.equal(wantsColour(undefined, {}), false)
  t.equal(wantsColour(true, { NO_COLOR: '1' }), false)
  t.equal(wantsColour(true, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count (no-color.org)')
  t.equal(wantsColour(true, { TERM: 'dumb' }), false)
})

t.test('a narrow terminal cuts the flexible column, not the others', async (t) => {
  const text = renderTable(
    [{ title: 'ID' }, { title: 'WHY', flexible: true }, { title: 'N', align: 'right' }],
    [[{ text: 'mx1' }, { text: 'a very long reason that will not fit in a narrow terminal' }, { text: '7' }]],
    { colour: false, columns: 30 },
  )
  t.equal(text, 'ID   WHY                     N\nmx1  a very long reason th…  7\n')
  t.equal(text.split('\n')[1]?.length, 30)
})

t.test('status prints a table with every column, without colour when not a TTY', async (t) => {
  const { url } = await startTestAdmin(t, { port: fleet() })
  const r = await run('status', ['--admin', url])
  t.equal(r.code, 0)
  t.equal(r.err, '')
  t.notOk(r.out.includes(ESC), 'no escape codes in a pipe')
  const lines = r.out.trimEnd().split('\n')
  t.equal(lines[0], 'node node-a: 3 backends, 1 admitted')
  t.match(lines[1], /^BACKEND\s+STATE\s+WHY\s+SINCE\s+IN FLIGHT\s+SUCCESS\s+MSGS\/MIN$/)
  t.match(lines[2], /^mx1\s+admitted\s+-\s+3m ago\s+4\s+99\.9%\s+310$/)
  t.match(
    lines[3],
    /^mx2\s+ejected\s+failure ratio 3\.1% vs pool 0\.2% over 400 attempts \(ends in (9|10)m\)\s+2h 1m ago\s+0\s+96\.9%\s+2\.5$/,
  )
  t.match(lines[4], /^mx3\s+probation\s+-\s+(4|5|6)s ago\s+0\s+-\s+0\.0$/)
})

t.test('status ID prints one backend with the detector’s evidence; an unknown id exits 2', async (t) => {
  const now = Date.now()
  const port = new MemoryAdminPort([
    backendView('mx3', {
      state: 'ejected',
      reason: 'detector: 16 faults in 540 messages',
      since: now - 60_000,
      until: now + 30_000,
      detector: {
        ejectedBy: 'detector',
        evidence: {
          signal: 'fault',
          faults: 16,
          messages: 540,
          rate: 0.029,
          poolRate: 0.0051,
          statistic: 16.2,
          threshold: 16,
          firstFaultAt: now - 96_000,
        },
        statistic: { fault: 0, refusal: 0 },
        threshold: 16,
        faultRatio: 0.029,
        refusalRatio: 0,
        poolFaultRatio: 0.0051,
        suspect: false,
        wouldEject: false,
        mode: 'enforce',
        poolDegraded: false,
        budgetFrozen: true,
      },
    }),
  ])
  const { url } = await startTestAdmin(t, { port })
  const r = await run('status', ['mx3', '--admin', url])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^backend mx3 \(127\.0\.0\.1:\d+, weight 1\)\n {2}state {7}ejected since \S+ ago/)
  t.match(r.out, /ejected by {2}detector/)
  t.match(
    r.out,
    /evidence {4}16 faults in 540 messages \(window rate 2\.9%\) vs the rest of the pool's 0\.51%\n {14}CUSUM 16\.20 ≥ threshold 16; first fault \S+( \S+)? ago/,
  )
  t.match(r.out, /flags {7}ejection budget reached/)
  const json = await run('status', ['mx3', '--json', '--admin', url])
  t.match(JSON.parse(json.out), { id: 'mx3', detector: { evidence: { faults: 16 } } })
  const unknown = await run('status', ['mx9', '--admin', url])
  t.equal(unknown.code, 2)
  t.match(unknown.err, /mx9/)
})

t.test('status on a TTY colours states and weak success ratios; NO_COLOR turns it off', async (t) => {
  const { url } = await startTestAdmin(t, { port: fleet() })
  const tty = await run('status', ['--admin', url], capture({ isTTY: true, columns: 200 }))
  t.equal(tty.code, 0)
  t.ok(tty.out.includes(`${ESC}32madmitted`), 'admitted is green')
  t.ok(tty.out.includes(`${ESC}31mejected`), 'ejected is red')
  t.ok(tty.out.includes(`${ESC}33m  96.9%`), 'a 96.9% success ratio is yellow (padded to the column)')
  const noColour = await run('status', ['--admin', url], capture({ isTTY: true, env: { NO_COLOR: '1' } }))
  t.notOk(noColour.out.includes(ESC))
})

t.test('status --json prints the API answer, parseable', async (t) => {
  const port = fleet()
  const { url } = await startTestAdmin(t, { port })
  const r = await run('status', ['--json', `--admin=${url}`])
  t.equal(r.code, 0)
  t.same(JSON.parse(r.out), { node: 'node-a', configVersion: port.configVersion, nodes: [], backends: port.backends() })
})

t.test('status --watch redraws until its iteration bound, or until stopped', async (t) => {
  const { url } = await startTestAdmin(t, { port: fleet() })
  const text = await run('status', ['--admin', url, '--watch', '0.1'], capture({}, { maxWatchIterations: 3 }))
  t.equal(text.code, 0)
  t.equal(text.out.match(/^BACKEND/gm)?.length, 3, 'three frames')
  t.match(text.out, /every 0\.1s, Ctrl-C stops/)
  const json = await run(
    'status',
    ['--admin', url, '--json', '--watch', '0.1'],
    capture({ env: { MXGATE_WATCH_MAX: '2' } }),
  )
  const frames = json.out.trimEnd().split('\n')
  t.equal(frames.length, 2, 'one JSON line per frame')
  for (const f of frames) t.equal((JSON.parse(f) as { node: string }).node, 'node-a')
  const tty = await run(
    'status',
    ['--admin', url, '--watch', '0.1'],
    capture({ isTTY: true }, { maxWatchIterations: 2 }),
  )
  t.equal(tty.out.split(`${ESC}H${ESC}2J`).length, 3, 'a TTY is cleared before each frame')

  const stop = new AbortController()
  const c = capture()
  const stopped = runOpsCommand('status', ['--admin', url, '--watch', '5'], { ...c.io, signal: stop.signal })
  t.ok(await waitFor(() => c.out().includes('BACKEND'), 10_000), 'the first frame is out')
  stop.abort()
  t.equal(await stopped, 0, 'stopping a watch is a clean exit')
  t.equal(c.out().match(/^BACKEND/gm)?.length, 1)
})

t.test('eject, drain and restore change the backend and print its new state', async (t) => {
  const { url, port } = await startTestAdmin(t, { tokens: `alice:${TOKEN}` })
  const e = await run('eject', ['mx1', '--reason', 'bad deploy', '--for', '30m', '--admin', url, '--token', TOKEN])
  t.equal(e.err, '')
  t.equal(e.code, 0)
  t.match(e.out, /^ejected mx1: now manual-ejected; bad deploy \(by alice, ends in (29|30)m\)\n$/)
  t.same(port.calls[0], {
    op: 'eject',
    id: 'mx1',
    reason: 'bad deploy',
    forMs: 1_800_000,
    actor: { by: 'alice', from: '127.0.0.1' },
  })
  const env = { MXGATE_ADMIN_URL: url, MXGATE_ADMIN_TOKEN: TOKEN }
  const d = await run('drain', ['mx2'], capture({ env }))
  t.equal(d.code, 0, 'admin URL and token from the environment')
  t.equal(d.out, 'draining mx2: now draining; no reason given (by alice)\n')
  const r = await run('restore', ['mx1', '--json'], capture({ env }))
  t.equal(r.code, 0)
  t.match(JSON.parse(r.out), { id: 'mx1', state: 'probation' })
})

t.test('a missing --reason is a usage error and nothing is sent', async (t) => {
  const { url, port, lines } = await startTestAdmin(t)
  const r = await run('eject', ['mx1', '--admin', url])
  t.equal(r.code, 2)
  t.equal(
    r.err,
    'mxgate eject: --reason is required: say why you eject mx1; usage: mxgate eject ID --reason TEXT [--for 30m]\n',
  )
  t.equal(r.out, '')
  t.same(port.calls, [])
  t.same(
    lines.filter((l) => l.audit),
    [],
    'no request reached the server',
  )
})

t.test('a bad --for is refused by the API with the accepted forms (exit 2)', async (t) => {
  const { url } = await startTestAdmin(t)
  const r = await run('eject', ['mx1', '--reason', 'x', '--for', 'soon', '--admin', url])
  t.equal(r.code, 2)
  t.equal(
    r.err,
    'mxgate eject: for must be a duration with a unit ("90s", "30m", "2h", "1d") or a number of milliseconds; got "soon"\n',
  )
})

t.test('without a token, or with a wrong one, a change is refused (exit 1) and says how to fix it', async (t) => {
  const { url, port } = await startTestAdmin(t, { tokens: TOKEN })
  const none = await run('restore', ['mx1', '--admin', url], capture({ env: {} }))
  t.equal(none.code, 1)
  t.match(none.err, new RegExp(`^mxgate restore: refused by ${url} \\(401\\): this change needs a token`))
  t.match(none.err, /\(no token was sent: pass --token T or --token-file F, or set MXGATE_ADMIN_TOKEN\)\n$/)
  const wrong = await run('restore', ['mx1', '--admin', url, '--token', 'nope'])
  t.equal(wrong.code, 1)
  t.equal(
    wrong.err,
    `mxgate restore: refused by ${url} (401): the token does not match any admin token of this node; check --token / --token-file / MXGATE_ADMIN_TOKEN against admin.token or the node's admin.token_file (for a name:token list, send only the part after the colon) (token from --token)\n`,
  )
  t.same(port.calls, [])
  const list = await run('restore', ['mx1'], capture({ env: { MXGATE_ADMIN_URL: url, MXGATE_ADMIN_TOKEN: 'a:x,b:y' } }))
  t.equal(list.code, 2)
  t.equal(
    list.err,
    'mxgate restore: MXGATE_ADMIN_TOKEN holds a list of tokens (name:token,…); pass one token with --token T\n',
  )
})

t.test('an unknown backend or message is exit 2 naming the known ids', async (t) => {
  const port = new MemoryAdminPort()
  port.messages.set('m1', spoolItem('m1'))
  const { url } = await startTestAdmin(t, { port })
  const b = await run('drain', ['mx9', '--admin', url])
  t.equal(b.code, 2)
  t.equal(b.err, 'mxgate drain: unknown backend "mx9"; known: mx1, mx2, mx3\n')
  const m = await run('spool', ['show', 'nope', '--admin', url])
  t.equal(m.code, 2)
  t.equal(m.err, 'mxgate spool show: unknown message "nope"; known: m1\n')
})

t.test('an unreachable admin API is exit 1 with the URL, the reason and the fix', async (t) => {
  const closed = await freePort()
  const r = await run('status', ['--admin', `http://127.0.0.1:${closed}`])
  t.equal(r.code, 1)
  t.equal(
    r.err,
    `mxgate status: cannot reach the admin API at http://127.0.0.1:${closed}: connection refused; is mxgate running? use --admin URL (or MXGATE_ADMIN_URL)\n`,
  )
  const watch = await run(
    'status',
    ['--admin', `http://127.0.0.1:${closed}`, '--watch', '0.1'],
    capture({}, { maxWatchIterations: 2 }),
  )
  t.equal(watch.code, 1, 'a watch keeps trying and reports the last failure')
  t.equal(watch.err.split('\n').filter((l) => l.includes('connection refused')).length, 2)
})

t.test('a server that is not the admin API, and a failing one, are exit 1', async (t) => {
  const srv = http.createServer((req, res) => {
    if (req.url === '/api/backends') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>')
    else res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"shutting down"}')
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())))
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`
  const html = await run('status', ['--admin', url])
  t.equal(html.code, 1)
  t.equal(
    html.err,
    `mxgate status: ${url} answered GET /api/backends with 200 and text/html, not the mxgate admin API's JSON; check --admin\n`,
  )
  const down = await run('spool', ['flush', '--admin', url])
  t.equal(down.code, 1)
  t.equal(down.err, `mxgate spool flush: the admin API at ${url} failed (503): shutting down\n`)
})

t.test('usage errors: unknown command, subcommand, option, missing or extra arguments, bad --admin', async (t) => {
  const cases: [string, string[], string][] = [
    [
      'frob',
      [],
      'mxgate frob: "frob" is not an ops command; expected status, eject, drain, restore, spool, replay, journal, reload\n',
    ],
    [
      'spool',
      ['frob'],
      'mxgate spool frob: unknown spool command "frob"; expected ls, show, flush, hold, release or bounce\n',
    ],
    ['spool', [], 'mxgate spool: which spool command? expected ls, show, flush, hold, release or bounce\n'],
    [
      'status',
      ['--jsn'],
      'mxgate status: unknown option --jsn; status takes --admin URL, --token T, --token-file F, --json, --watch [SECONDS]\n',
    ],
    ['restore', [], 'mxgate restore: which backend? usage: mxgate restore ID\n'],
    ['restore', ['mx1', 'mx2'], 'mxgate restore: unexpected argument "mx2"; usage: mxgate restore ID\n'],
    ['spool', ['hold'], 'mxgate spool hold: which message? usage: mxgate spool hold ID\n'],
    ['eject', ['mx1', '--reason'], 'mxgate eject: --reason needs a value\n'],
    ['status', ['--watch', '0'], 'mxgate status: --watch takes 0.1 to 3600 seconds, got 0\n'],
    [
      'status',
      ['--admin', 'localhost:8025'],
      'mxgate status: --admin must be an http:// or https:// URL, got "localhost:8025"\n',
    ],
    [
      'status',
      ['--admin', 'nonsense'],
      'mxgate status: --admin must be a URL like http://127.0.0.1:8025, got "nonsense"\n',
    ],
  ]
  for (const [cmd, argv, err] of cases) {
    const r = await run(cmd, argv)
    t.equal(r.code, 2, `${cmd} ${argv.join(' ')}`)
    t.equal(r.err, err)
    t.equal(r.out, '')
  }
  const help = await run('eject', ['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /eject ID --reason TEXT \[--for 30m\]/)
})

t.test('spool: ls as a table and as JSON, show, flush, hold, release, bounce', async (t) => {
  const port = new MemoryAdminPort()
  const now = Date.now()
  port.messages.set('m1', spoolItem('m1', { receivedAt: now - 400_000, nextAttemptAt: now + 250_000, size: 2048 }))
  port.messages.set(
    'm2',
    spoolItem('m2', { receivedAt: now - 90_000, held: true, attempts: 0, lastError: null, size: 100 }),
  )
  const { url } = await startTestAdmin(t, { port })
  const ls = await run('spool', ['ls', '--admin', url])
  t.equal(ls.code, 0)
  const rows = ls.out.trimEnd().split('\n')
  t.equal(rows[0], 'node node-a: 2 messages, 2.1 KB')
  t.match(rows[1], /^ID\s+AGE\s+ATTEMPTS\s+NEXT ATTEMPT\s+LAST ERROR\s+SIZE$/)
  t.match(rows[2], /^m1\s+6m\s+2\s+in 4m\s+mx2 dot 451 4\.3\.0 Temporary failure\s+2\.0 KB$/)
  t.match(rows[3], /^m2\s+1m\s+0\s+held\s+-\s+100 B$/)
  const json = await run('spool', ['ls', '--json', '--admin', url])
  t.equal((JSON.parse(json.out) as { messages: unknown[] }).messages.length, 2)

  const show = await run('spool', ['show', 'm1', '--admin', url])
  t.equal(show.code, 0)
  t.match(show.out, /^message m1 on node node-a\n {2}from {7}alice@sender\.example\n/)
  t.match(show.out, /\n {4}2026-11-28T10:00:00\.000Z {2}mx2 at dot: 451 4\.3\.0 Temporary failure\n$/)

  const flush = await run('spool', ['flush', '--admin', url])
  t.equal(flush.out, 'node node-a: 2 messages scheduled for retry now\n')
  const flushOne = await run('spool', ['flush', 'm1', '--admin', url])
  t.equal(flushOne.out, 'node node-a: 1 message scheduled for retry now\n')
  const hold = await run('spool', ['hold', 'm1', '--admin', url])
  t.equal(hold.out, 'held m1: next attempt held\n')
  const release = await run('spool', ['release', 'm1', '--admin', url])
  t.match(release.out, /^released m1: next attempt in (3|4)m\n$/)
  const bounce = await run('spool', ['bounce', 'm2', '--admin', url])
  t.equal(bounce.out, 'bounced m2: removed from the spool; a DSN goes to its sender (none for <>)\n')
  t.same(
    port.calls.map((c) => [c.op, c.id, c.actor.by]),
    [
      ['flush', undefined, 'admin'],
      ['flush', 'm1', 'admin'],
      ['hold', 'm1', 'admin'],
      ['release', 'm1', 'admin'],
      ['bounce', 'm2', 'admin'],
    ],
  )
  const afterBounce = await run('spool', ['ls', '--admin', url])
  t.equal(afterBounce.out.split('\n')[0], 'node node-a: 1 message, 2.0 KB')
})

t.test(
  'reload text: versions, pool changes, what needs a restart, notes; nodes whose version differs are marked',
  async (t) => {
    const text = reloadText({
      node: 'n1',
      previousVersion: 'aaa',
      configVersion: 'bbb',
      files: ['/etc/mxgate/mxgate.ini'],
      added: ['mx4'],
      removed: ['mx1'],
      reweighted: [{ id: 'mx2', from: 1, to: 2 }],
      changed: ['smtp.domains'],
      needsRestart: [{ key: 'spool.dir', running: '/a', file: '/b' }],
      notes: ['a note'],
    })
    t.equal(
      text,
      [
        'reloaded n1: config aaa → bbb',
        '  added (in probation): mx4',
        '  removed (messages in flight finish): mx1',
        '  weight of mx2: 1 → 2',
        '  changed: smtp.domains',
        '  needs a restart: spool.dir (running "/a", file "/b")',
        '  note: a note',
        '',
      ].join('\n'),
    )
    t.equal(nodesText('aaa', [{ node: 'n1', configVersion: 'aaa', at: 1000 }], 1000), 'config aaa\n')
    const two = nodesText(
      'aaa',
      [
        { node: 'n1', configVersion: 'aaa', at: 1000 },
        { node: 'n2', configVersion: 'ccc', at: 0 },
      ],
      1000,
    )
    t.match(two, /n1 {2}config aaa {2}seen 0s ago\n/)
    t.match(two, /n2 {2}config ccc {2}seen 1s ago {2}← differs from this node/)
  },
)
