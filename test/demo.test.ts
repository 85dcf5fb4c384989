import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../src/config/load'
import { DEMO_DEFAULTS, DemoUsageError, parseDemoArgs } from '../src/demo/args'
import { demoIni, demoSettingChanges, formatMs, writeDemoConfig } from '../src/demo/demo-config'
import { Display } from '../src/demo/display'
import { describeHealthEvent, parseLogLine } from '../src/demo/log-events'
import { childEnv } from '../src/demo/mxgate-child'
import { formatSummary, type SendOutcome, type SummaryInput, summarize, summaryLine } from '../src/demo/report'

const ROOT = path.resolve(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'mxgate.js')

const ok: SendOutcome = { ok: true, code: 250 }
const ids = (n: number) => Array.from({ length: n }, (_, i) => `m${i}@demo.test`)

function input(over: Partial<SummaryInput>): SummaryInput {
  const messageIds = over.messageIds ?? ids(3)
  return {
    requested: messageIds.length,
    messageIds,
    outcomes: messageIds.map(() => ok),
    received: new Map([['mx1', [...messageIds]]]),
    ...over,
  }
}

t.test('the summary counts nothing lost and no duplicates when every accepted message is at one backend', async (t) => {
  const s = summarize(
    input({
      messageIds: ids(4),
      received: new Map([
        ['mx1', ['m0@demo.test', 'm2@demo.test']],
        ['mx2', ['m1@demo.test']],
        ['mx3', ['m3@demo.test']],
      ]),
    }),
  )
  t.match(s, { sent: 4, accepted: 4, lost: 0, duplicates: 0, deliveredUnacked: 0, strangers: 0 })
  t.same(
    [...s.deliveredPerBackend],
    [
      ['mx1', 2],
      ['mx2', 1],
      ['mx3', 1],
    ],
  )
})

t.test('a message answered 250 but held by no backend is lost, by Message-ID', async (t) => {
  const s = summarize(input({ received: new Map([['mx1', ['m0@demo.test', 'm2@demo.test']]]) }))
  t.equal(s.lost, 1)
  t.same(s.lostIds, ['m1@demo.test'])
})

t.test('a Message-ID held twice is one duplicate, whether on two backends or twice on one', async (t) => {
  const across = summarize(
    input({
      received: new Map([
        ['mx1', ['m0@demo.test', 'm1@demo.test']],
        ['mx2', ['m1@demo.test', 'm2@demo.test']],
      ]),
    }),
  )
  t.equal(across.duplicates, 1)
  t.same(across.duplicateIds, ['m1@demo.test'])
  const twiceOnOne = summarize(
    input({ received: new Map([['mx1', ['m0@demo.test', 'm1@demo.test', 'm2@demo.test', 'm2@demo.test']]]) }),
  )
  t.equal(twiceOnOne.duplicates, 1)
  t.same(twiceOnOne.duplicateIds, ['m2@demo.test'])
  t.equal(twiceOnOne.lost, 0)
})

t.test(
  'only 250-acked messages can be lost; a delivered message the sender did not get 250 for is counted apart',
  async (t) => {
    const s = summarize(
      input({
        messageIds: ids(5),
        outcomes: [
          ok,
          { ok: false, code: 451 },
          { ok: false, code: 554 },
          { ok: false, code: 354, error: 'no reply within 10000 ms at dot' },
          undefined,
        ],
        received: new Map([['mx1', ['m0@demo.test', 'm3@demo.test', 'stranger@elsewhere', null]]]),
      }),
    )
    t.match(s, {
      requested: 5,
      sent: 4,
      accepted: 1,
      tempFailed: 1,
      rejected: 1,
      noReply: 1,
      notSent: 1,
      lost: 0,
      duplicates: 0,
      deliveredUnacked: 1,
      strangers: 2,
    })
  },
)

t.test('the demo summary line has the exact shape the README and tests rely on', async (t) => {
  const s = summarize(input({ received: new Map([['mx1', ['m0@demo.test', 'm1@demo.test', 'm1@demo.test']]]) }))
  t.equal(summaryLine(s), 'demo: sent 3, accepted 3, lost 1, duplicates 1')
  const lines = formatSummary(s, [{ id: 'mx1', faultsSeen: 2, finalState: 'admitted', note: 'fixed' }], 2)
  t.ok(lines.some((l) => /^ {2}lost +1 {2}accepted but at no backend/.test(l)))
  t.ok(lines.some((l) => /^ {4}mx1 +3 {2}ends admitted, 2 failed attempts {2}\(fixed\)$/.test(l)))
  t.ok(lines.includes('  lost: <m2@demo.test>'))
  t.ok(lines.includes('  duplicate: <m1@demo.test>'))
})

t.test('demo options: defaults, both spellings, and errors that name the option and the range', async (t) => {
  t.same(parseDemoArgs([]), DEMO_DEFAULTS)
  t.match(parseDemoArgs(['--count', '300', '--concurrency=5', '--rate', '20']), {
    count: 300,
    concurrency: 5,
    rate: 20,
  })
  t.equal(parseDemoArgs(['--help']).help, true)
  t.throws(
    () => parseDemoArgs(['--count', '0']),
    new DemoUsageError('--count "0" must be a whole number from 1 to 100000'),
  )
  t.throws(() => parseDemoArgs(['--count']), { code: 'EDEMOUSAGE', message: /--count needs a number/ })
  t.throws(() => parseDemoArgs(['--fast']), { code: 'EDEMOUSAGE', message: /unknown option "--fast"/ })
})

t.test('mxgate log lines become health and message events; anything else is ignored', async (t) => {
  const health = parseLogLine(
    JSON.stringify({
      level: 40,
      time: '2026-01-01T00:00:10.000Z',
      part: 'health',
      backend: 'mx3',
      from: 'admitted',
      to: 'ejected',
      reason: '6 of 8 attempts failed (75%) within 10s; last: dot: 451 4.3.0 Internal configuration error',
      until: Date.parse('2026-01-01T00:00:12.000Z'),
      msg: 'backend mx3 ejected',
    }),
  )
  t.match(health, { kind: 'health', backend: 'mx3', from: 'admitted', to: 'ejected' })
  if (health?.kind !== 'health') throw new Error('expected a health event')
  t.equal(
    describeHealthEvent(health),
    'mx3 admitted → ejected for 2s: 6 of 8 attempts failed (75%) within 10s; last: dot: 451 4.3.0 Internal configuration error',
  )
  const relayed = parseLogLine(
    JSON.stringify({
      part: 'smtp',
      msg: 'relayed',
      backends: ['mx1'],
      attempts: [
        { backendId: 'mx3', verdict: 'backend', detail: 'dot: 451 4.3.0' },
        { backendId: 'mx1', verdict: 'delivered', detail: '250 2.0.0 Ok' },
      ],
    }),
  )
  t.match(relayed, {
    kind: 'message',
    outcome: 'relayed',
    backends: ['mx1'],
    attempts: [{ backendId: 'mx3', verdict: 'backend' }, {}],
  })
  t.match(parseLogLine(JSON.stringify({ part: 'smtp', msg: 'rejected by backend', backends: [] })), {
    outcome: 'rejected',
  })
  t.equal(parseLogLine('[INFO] [-] [core] Haraka started'), null)
  t.equal(parseLogLine('{not json'), null)
  t.equal(parseLogLine(JSON.stringify({ part: 'main', msg: 'mxgate starting' })), null)
})

t.test("the demo's mxgate.ini is valid config and changes only the ejection timings it announces", async (t) => {
  t.equal(formatMs(30_000), '30s')
  t.equal(formatMs(600_000), '10m')
  t.equal(formatMs(250), '250ms')
  const base = loadConfig({ baseDir: path.join(ROOT, 'config'), env: {} })
  const changes = demoSettingChanges(base.breaker)
  t.same(
    changes.map((c) => c.key),
    ['breaker.ejection_time', 'breaker.max_ejection_time', 'breaker.slow_start'],
  )
  t.match(demoIni(changes), /^\[breaker\]\nejection_time = 2s\nmax_ejection_time = 4s\nslow_start = 5s\n$/m)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-demo-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeDemoConfig(dir, changes)
  const cfg = loadConfig({ baseDir: path.join(ROOT, 'config'), overrideDir: dir, env: {} })
  t.same(
    { ...cfg.breaker, ejectionMs: 0, maxEjectionMs: 0, slowStartMs: 0 },
    { ...base.breaker, ejectionMs: 0, maxEjectionMs: 0, slowStartMs: 0 },
  )
  t.match(cfg.breaker, { ejectionMs: 2000, maxEjectionMs: 4000, slowStartMs: 5000 })
})

t.test("the demo's mxgate ignores the shell's MXGATE_* settings (built-in defaults, in-memory state)", async (t) => {
  const env = childEnv(
    { PATH: '/bin', MXGATE_REDIS_URL: 'redis://x', MXGATE_WORKERS: '4' },
    { MXGATE_LISTEN: '127.0.0.1:1' },
  )
  t.same(env, { PATH: '/bin', MXGATE_LISTEN: '127.0.0.1:1' })
})

t.test('progress: one redrawn line on a TTY, periodic plain lines on a pipe', async (t) => {
  let tty = ''
  const onTty = new Display({ write: (s: string) => (tty += s) }, true)
  onTty.progress('sending 1/2', true)
  onTty.line('mx3 ejected')
  onTty.progress('sending 2/2', true)
  onTty.endProgress()
  t.equal(tty, '\r\x1b[2Ksending 1/2\r\x1b[2Kmx3 ejected\nsending 1/2\r\x1b[2Ksending 2/2\n')

  let pipe = ''
  const onPipe = new Display({ write: (s: string) => (pipe += s) }, false, 60_000)
  onPipe.progress('sending 1/3')
  onPipe.progress('sending 2/3')
  onPipe.progress('sending 3/3', true)
  t.match(pipe, /^\[ +\d+\.\ds\] sending 1\/3\n\[ +\d+\.\ds\] sending 3\/3\n$/)
})

t.test('npm run demo: mx3 is ejected with its reason, nothing is lost, and nothing is left running', async (t) => {
  const proc = spawn(process.execPath, [BIN, 'demo', '--count', '300'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  proc.stderr.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const killer = setTimeout(() => proc.kill('SIGKILL'), 90_000)
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)))
  clearTimeout(killer)

  t.equal(code, 0, 'the demo exits 0')
  if (code !== 0) t.comment(out)
  const lines = out.trimEnd().split('\n')
  t.equal(lines.at(-1), 'demo: sent 300, accepted 300, lost 0, duplicates 0', 'the summary line comes last')
  t.match(
    out,
    /mx3 admitted → ejected for [\d.]+s: \d+ of \d+ attempts failed \(\d+%\) within 10s; last: dot: 451 4\.3\.0/,
  )
  t.match(out, /^ {4}mx1 +\d+ {2}ends /m, 'per-backend delivery is shown')
  t.match(out, /^ {4}mx2 +\d+ {2}ends /m)

  const pid = Number(/mxgate started \(pid (\d+)\)/.exec(out)?.[1])
  t.ok(pid > 0, 'the demo names the mxgate process it started')
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'mxgate is no longer running')
  const tmp = /temp dir \(config, spool\): (\S+)/.exec(out)?.[1]
  t.ok(tmp !== undefined && !existsSync(tmp), 'the temp dir is removed')
})
