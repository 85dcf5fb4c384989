import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../src/config/load'
import { DEMO_DEFAULTS, DemoUsageError, parseDemoArgs } from '../src/demo/args'
import { demoIni, demoSettingChanges, formatMs, unchangedSettings, writeDemoConfig } from '../src/demo/demo-config'
import { Display } from '../src/demo/display'
import { IncidentScript, MX3_FAULT, MX4_DOWN } from '../src/demo/incident'
import { parseLogLine } from '../src/demo/log-events'
import { childEnv, MxgateChild } from '../src/demo/mxgate-child'
import { describeHealthEvent, ejectionCause } from '../src/demo/narration'
import { formatSummary, type SendOutcome, type SummaryInput, summarize, summaryLine } from '../src/demo/report'
import { FakeBackend } from '../src/testing/fake-backend'
import { validateFaultRules } from '../src/testing/fault-rules'

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
  const lines = formatSummary(s, [{ id: 'mx1', faultsSeen: 2, finalState: 'admitted', note: 'fixed' }], {
    rerouted: 2,
    spooled: 1,
  })
  t.ok(lines.some((l) => /^ {2}lost +1 {2}accepted but at no backend/.test(l)))
  t.ok(lines.some((l) => /^ {2}rerouted +2 {2}a backend failed it/.test(l)))
  t.ok(lines.some((l) => /^ {2}spooled +1 {2}no backend took it at once/.test(l)))
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

t.test('mxgate log lines become health, detector and message events; anything else is ignored', async (t) => {
  const health = parseLogLine(
    JSON.stringify({
      level: 40,
      time: '2026-01-01T00:00:10.000Z',
      part: 'health',
      backend: 'mx4',
      from: 'admitted',
      to: 'ejected',
      reason: '6 of 8 attempts failed (75%) within 10s; last: connect: connect ECONNREFUSED 127.0.0.1:2601',
      window: { attempts: 8, faults: 6 },
      evidence: null,
      until: Date.parse('2026-01-01T00:00:20.000Z'),
      msg: 'backend mx4 ejected',
    }),
  )
  t.match(health, {
    kind: 'health',
    backend: 'mx4',
    from: 'admitted',
    to: 'ejected',
    window: { attempts: 8, faults: 6 },
  })
  if (health?.kind !== 'health') throw new Error('expected a health event')
  t.equal(health.evidence, null)
  t.equal(ejectionCause(health), 'breaker')
  t.same(describeHealthEvent(health), [
    'mx4 admitted → ejected for 10s by its circuit breaker: 6 of 8 attempts failed (75%) within 10s; last: connect: connect ECONNREFUSED 127.0.0.1:2601',
  ])
  const notice = parseLogLine(
    JSON.stringify({
      level: 40,
      part: 'detector',
      backend: 'mx4',
      msg: 'detector would eject mx4 (ejection budget reached): 61 faults in 61 messages',
    }),
  )
  t.match(notice, { kind: 'detector', level: 40, backend: 'mx4', text: /^detector would eject mx4 / })
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
  t.match(parseLogLine(JSON.stringify({ part: 'smtp', msg: 'spooled', backends: [] })), { outcome: 'spooled' })
  t.equal(parseLogLine('[INFO] [-] [core] Haraka started'), null)
  t.equal(parseLogLine('{not json'), null)
  t.equal(parseLogLine(JSON.stringify({ part: 'main', msg: 'mxgate starting' })), null)
})

t.test('a detector ejection reads as its evidence: faults, messages, rates, the statistic and h', async (t) => {
  const at = Date.parse('2026-01-01T00:00:10.000Z')
  const e = parseLogLine(
    JSON.stringify({
      level: 40,
      time: '2026-01-01T00:00:10.000Z',
      part: 'health',
      backend: 'mx3',
      from: 'admitted',
      to: 'ejected',
      reason:
        "detector: 9 faults in 229 messages (3.93%; window 4.4%) vs the rest of the pool's 0.00%; CUSUM 17.1 ≥ 16; first of them 4s ago",
      window: { attempts: 130, faults: 6 },
      evidence: {
        signal: 'fault',
        faults: 9,
        messages: 229,
        rate: 0.044,
        poolRate: 0,
        statistic: 17.08,
        threshold: 16,
        firstFaultAt: at - 4000,
      },
      until: at + 10_000,
      msg: 'backend mx3 ejected',
    }),
  )
  if (e?.kind !== 'health') throw new Error('expected a health event')
  t.equal(ejectionCause(e), 'detector')
  t.same(describeHealthEvent(e, { thresholdPercent: 50, windowMs: 10_000 }), [
    'mx3 admitted → ejected for 10s by the outlier detector',
    "evidence: 9 faults in 229 of its messages (3.9%); its rate over the window 4.4% vs the rest of the pool's 0.00%",
    'CUSUM statistic 17.1 ≥ threshold 16; the first of these 4s ago',
    'its breaker meanwhile: 6 of 130 attempts failed (5%) within 10s; it trips at 50%',
  ])
  const probing = parseLogLine(
    JSON.stringify({ part: 'health', backend: 'mx3', from: 'ejected', to: 'probing', reason: 'ejection time over' }),
  )
  if (probing?.kind !== 'health') throw new Error('expected a health event')
  t.same(describeHealthEvent(probing), ['mx3 ejected → probing: ejection time over'])
})

t.test('the incident: mx4 goes down once the detector has mx3 out; mx3 is fixed once both are out', async (t) => {
  validateFaultRules([MX3_FAULT])
  validateFaultRules(MX4_DOWN)
  const script = new IncidentScript(1000)
  const none = { mx3CaughtByDetector: false, mx4Ejected: false }
  t.same(script.due({ done: 900, ...none }), [], 'nothing happens before the detector catches mx3, half-way or not')
  t.same(script.due({ done: 300, mx3CaughtByDetector: true, mx4Ejected: false }), ['mx4-down'])
  t.same(script.due({ done: 310, mx3CaughtByDetector: true, mx4Ejected: false }), [], 'each step once')
  t.same(script.due({ done: 400, mx3CaughtByDetector: true, mx4Ejected: true }), ['fix-mx3'])
  t.same(script.due({ done: 1000, mx3CaughtByDetector: true, mx4Ejected: true }), [])

  const late = new IncidentScript(1000)
  t.same(
    late.due({ done: 700, mx3CaughtByDetector: true, mx4Ejected: false }),
    ['mx4-down', 'fix-mx3'],
    'half-way fixes mx3 even if the breaker has not caught mx4 yet',
  )
})

t.test("the demo's mxgate.ini is valid config and changes only the clocks it announces", async (t) => {
  t.equal(formatMs(30_000), '30s')
  t.equal(formatMs(600_000), '10m')
  t.equal(formatMs(250), '250ms')
  const base = loadConfig({ baseDir: path.join(ROOT, 'config'), env: {} })
  const changes = demoSettingChanges(base)
  t.same(
    changes.map((c) => `${c.key}: ${c.from} → ${c.to}`),
    [
      'breaker.ejection_time: 30s → 10s',
      'breaker.max_ejection_time: 10m → 20s',
      'breaker.slow_start: 30s → 5s',
      'detector.bucket: 10s → 1s',
      'detector.retention: 10m → 1m',
    ],
  )
  t.equal(
    demoIni(changes),
    '; written by `mxgate demo`; layered over config/mxgate.ini\n[breaker]\nejection_time = 10s\n' +
      'max_ejection_time = 20s\nslow_start = 5s\n[detector]\nbucket = 1s\nretention = 1m\n',
  )
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-demo-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeDemoConfig(dir, changes)
  const cfg = loadConfig({ baseDir: path.join(ROOT, 'config'), overrideDir: dir, env: {} })
  const clocksOff = (c: typeof base) => ({
    ...c,
    files: [],
    breaker: { ...c.breaker, ejectionMs: 0, maxEjectionMs: 0, slowStartMs: 0 },
    detector: { ...c.detector, bucketMs: 0, retentionMs: 0 },
  })
  t.same(clocksOff(cfg), clocksOff(base), 'nothing changes but the five clocks')
  t.match(cfg.breaker, { ejectionMs: 10_000, maxEjectionMs: 20_000, slowStartMs: 5000 })
  t.match(cfg.detector, { bucketMs: 1000, retentionMs: 60_000 })
  t.equal(
    base.detector.retentionMs / base.detector.bucketMs,
    cfg.detector.retentionMs / cfg.detector.bucketMs,
    'the window holds as many buckets as shipped',
  )
  t.match(unchangedSettings(base, 4).join('\n'), /CUSUM ≥ 16 with at least 8 faults.*at most 1 of 4 backends/s)
})

t.test("the demo's mxgate ignores the shell's MXGATE_* settings (built-in defaults, in-memory state)", async (t) => {
  const env = childEnv(
    { PATH: '/bin', MXGATE_REDIS_URL: 'redis://x', MXGATE_WORKERS: '4' },
    { MXGATE_LISTEN: '127.0.0.1:1' },
  )
  t.same(env, { PATH: '/bin', MXGATE_LISTEN: '127.0.0.1:1' })
})

t.test("the demo's mxgate takes the demo's admin token, so the demo can flush its spool", async (t) => {
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-demo-admin-'))
  let child: MxgateChild | null = null
  t.teardown(async () => {
    await child?.stop(5_000)
    await backend.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  writeDemoConfig(dir, [])
  child = await MxgateChild.start({
    backends: [{ id: 'mx1', host: backend.host, port: backend.port }],
    domain: 'example.com',
    configDir: dir,
    spoolDir: path.join(dir, 'spool'),
    startTimeoutMs: 15_000,
  })
  t.equal(await child.adminPost('/api/spool/flush'), 200, 'POST /api/spool/flush with the token and JSON')
  t.notOk(existsSync(path.join(dir, 'spool', 'admin.token')), 'no token file: the token came from the demo')
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

t.test(
  'npm run demo: the detector ejects quiet mx3 with its evidence, the breaker ejects hard-down mx4, nothing is lost',
  async (t) => {
    // 3000 messages: the detector needs about 1,000 (mx3's faults are seeded, so it always needs the same ~230 of
    // mx3's own), then the breaker a few seconds of mx4's refusals; the demo itself waits on log lines, not clocks.
    const proc = spawn(process.execPath, [BIN, 'demo', '--count', '3000'], {
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
    const killer = setTimeout(() => proc.kill('SIGKILL'), 100_000)
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)))
    clearTimeout(killer)

    t.equal(code, 0, 'the demo exits 0')
    if (code !== 0) t.comment(out)
    const lines = out.trimEnd().split('\n')
    t.equal(lines.at(-1), 'demo: sent 3000, accepted 3000, lost 0, duplicates 0', 'the summary line comes last')

    const stamp = String.raw`\[ *[\d.]+s\]`
    t.match(
      out,
      new RegExp(
        String.raw`${stamp} mx3 admitted → ejected for 10s by the outlier detector\n` +
          String.raw` +evidence: \d+ faults in \d+ of its messages \([\d.]+%\); its rate over the window [\d.]+% vs the rest of the pool's [\d.]+%\n` +
          String.raw` +CUSUM statistic [\d.]+ ≥ threshold 16; the first of these \d+(\.\d)?s ago\n` +
          String.raw` +its breaker meanwhile: \d+ of \d+ attempts failed \(\d{1,2}%\) within 10s; it trips at 50%\n`,
      ),
      "mx3 is ejected by the detector, with the evidence under it, and its breaker's window far from tripping",
    )
    // mxgate refuses to start with a certificate it cannot use, so exit 0 and this line mean STARTTLS was offered.
    t.match(out, /inbound STARTTLS: offered, with a throwaway self-signed certificate made for this run/)
    t.match(out, /mx4 goes down hard: it refuses connections/)
    // Usually the detector sees mx4 a round after it goes down and holds back; if its round came only after the
    // breaker, there is nothing to hold back. Either way it never says anything but "budget".
    t.notMatch(out, /detector would eject mx4 \((?!ejection budget reached)/, "the detector's budget is spent on mx3")
    t.match(
      out,
      /mx4 admitted → ejected for 10s by its circuit breaker: \d+ of \d+ attempts failed \((5\d|[6-9]\d|100)%\) within 10s; last: connect: /,
      "mx4 is ejected by its breaker, with the breaker's evidence",
    )
    t.notMatch(out, /mx3 [a-z]+ → ejected [^\n]*by its circuit breaker/, "mx3's breaker never trips")
    t.notMatch(out, /mx4 [a-z]+ → ejected [^\n]*by the outlier detector/, 'mx4 is not the detector’s')
    t.match(out, /fixing mx3/)
    t.match(
      out,
      /^ {4}mx3 +\d+ {2}ends [a-z]+, \d+ failed attempts {2}\(quiet failer: 451'd \d+ of \d+ messages, then fixed\)$/m,
    )
    t.match(out, /^ {4}mx4 +\d+ {2}ends ejected, \d+ failed attempts {2}\(down hard from /m)
    t.match(out, /^ {2}lost +0 {2}/m)

    const pid = Number(/mxgate started \(pid (\d+)\)/.exec(out)?.[1])
    t.ok(pid > 0, 'the demo names the mxgate process it started')
    t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'mxgate is no longer running')
    const tmp = /temp dir \(config, spool\): (\S+)/.exec(out)?.[1]
    t.ok(tmp !== undefined && !existsSync(tmp), 'the temp dir is removed')
  },
)
