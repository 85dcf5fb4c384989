import { execFileSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { runLoad } from '../src/bench/loadgen'
import { BENCH_FROM, BENCH_TO, buildMessageWire } from '../src/bench/message'
import { freePort } from '../src/bench/net'
import { startSink } from '../src/bench/sink'
import { FakeBackend } from '../src/testing/fake-backend'

const base = { host: '127.0.0.1', concurrency: 4, timeLimitMs: 10_000, messageBytes: 5120, sessionTimeoutMs: 5_000 }

async function backend(t: Test, opts: ConstructorParameters<typeof FakeBackend>[0] = {}): Promise<FakeBackend> {
  const b = new FakeBackend(opts)
  await b.start()
  t.teardown(() => b.stop())
  return b
}

t.test('delivers exactly count messages, one connection each, with pipelining', async (t) => {
  const b = await backend(t, { pipelining: true })
  const r = await runLoad({ ...base, port: b.port, count: 25 })
  t.equal(r.sent, 25)
  t.equal(r.ok, 25)
  t.equal(r.temp + r.perm + r.errors, 0)
  t.equal(b.received.length, 25, 'the server received every message')
  t.equal(b.counters.connections, 25, 'one new TCP connection per message')
  const first = b.received[0]
  t.equal(first?.from, BENCH_FROM)
  t.same(first?.to, [BENCH_TO])
  t.same(first?.raw, buildMessageWire(5120).subarray(0, -3), 'the message arrives byte for byte')
  t.equal(r.latenciesMs.length, 25, 'one latency per delivered message')
  t.ok(
    r.latenciesMs.every((v, i, a) => v > 0 && (i === 0 || (a[i - 1] as number) <= v)),
    'latencies ascend',
  )
  t.ok(r.msgsPerSec > 0)
})

t.test('uniqueRecipients: every message to a recipient never used before, in this run or another', async (t) => {
  const b = await backend(t, { pipelining: true })
  await runLoad({ ...base, port: b.port, count: 10, uniqueRecipients: true })
  await runLoad({ ...base, port: b.port, count: 10, uniqueRecipients: true, concurrency: 1, messageBytes: 300 })
  const to = b.received.flatMap((m) => m.to)
  t.equal(to.length, 20)
  t.equal(new Set(to).size, 20, 'no recipient twice')
  t.ok(
    to.every((r) => /^cold-[0-9a-f]{8}-\d+@bench\.example$/.test(r)),
    'in the bench domain',
  )
})

t.test('works command by command with a server that does not advertise PIPELINING', async (t) => {
  const b = await backend(t, { pipelining: false })
  const r = await runLoad({ ...base, port: b.port, count: 10, messageBytes: 100 * 1024 })
  t.equal(r.ok, 10)
  t.equal(b.received.length, 10)
  t.equal(b.received[0]?.size, 100 * 1024)
})

t.test('counts a 4xx at RCPT as temporary and a 5xx after the dot as permanent', async (t) => {
  const temp = await backend(t, { faults: [{ stage: 'rcpt', action: 'reply', reply: '451 4.3.0 try later' }] })
  const rt = await runLoad({ ...base, port: temp.port, count: 8 })
  t.same([rt.ok, rt.temp, rt.perm, rt.errors], [0, 8, 0, 0])
  t.match(rt.samples[0], /rcpt: 451 4\.3\.0 try later/)
  t.equal(rt.latenciesMs.length, 0, 'refused messages have no delivery latency')
  const perm = await backend(t, { faults: [{ stage: 'dot', action: 'reply', reply: '554 5.6.0 no thanks' }] })
  const rp = await runLoad({ ...base, port: perm.port, count: 8 })
  t.same([rp.ok, rp.temp, rp.perm, rp.errors], [0, 0, 8, 0])
})

t.test('a refused connection is an error and the run still ends at count', async (t) => {
  const port = await freePort()
  const r = await runLoad({ ...base, port, count: 12 })
  t.same([r.sent, r.ok, r.errors], [12, 0, 12])
  t.match(r.samples[0], /ECONNREFUSED/)
})

t.test('a server that stalls ends each session at the session timeout', async (t) => {
  const b = await backend(t, { faults: [{ stage: 'dot', action: 'stall' }] })
  const r = await runLoad({ ...base, port: b.port, count: 2, sessionTimeoutMs: 300 })
  t.same([r.sent, r.ok, r.errors], [2, 0, 2])
  t.match(r.samples[0], /dot: no end after 300 ms/)
})

t.test('the time limit stops new sessions even when count is not reached', async (t) => {
  const b = await backend(t, { acceptDelayMs: 50 })
  const r = await runLoad({ ...base, port: b.port, concurrency: 2, count: 100_000, timeLimitMs: 300 })
  t.ok(r.sent < 100_000, `started ${r.sent} sessions, not the full count`)
  t.equal(r.ok, r.sent, 'sessions in flight at the limit still finish')
})

function hasSmtpSink(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v smtp-sink'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

t.test(
  'smoke: against smtp-sink, every 250 is counted at the sink',
  { skip: !hasSmtpSink() && 'smtp-sink is not installed (Debian package postfix)' },
  async (t) => {
    const sink = await startSink()
    t.teardown(() => sink.stop())
    const r = await runLoad({ ...base, port: sink.port, concurrency: 20, count: 200 })
    t.equal(r.ok, 200)
    const s = await sink.waitFor(200, 2_000, 10_000)
    t.equal(s.count, 200, 'smtp-sink counted each message once')
    t.ok(s.lastAt >= s.firstAt, 'first and last arrival are timed')
  },
)
