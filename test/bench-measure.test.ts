import { execFileSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { runLoad } from '../src/bench/loadgen'
import { measureDrain, measureThroughSink } from '../src/bench/measure'
import { startSink } from '../src/bench/sink'

function hasSmtpSink(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v smtp-sink'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const skip = !hasSmtpSink() && 'smtp-sink is not installed (Debian package postfix)'
const shape = { concurrency: 5, count: 40, timeLimitMs: 10_000, messageBytes: 5120 }

t.test(
  'a run through the sink counts what arrived there and charges no relay on the direct path',
  { skip },
  async (t) => {
    const sink = await startSink()
    t.teardown(() => sink.stop())
    const s = await measureThroughSink(sink.port, sink, [], shape, 10_000)
    t.equal(s.ok, 40)
    t.equal(s.atSink, 40)
    t.ok(s.msgsPerSec > 0)
    t.ok(s.p50Ms <= s.p99Ms)
    t.ok(Number.isNaN(s.cpuMsPerMsg), 'no relay, no relay CPU')
    t.same(s.problems, [])
    const again = await measureThroughSink(sink.port, sink, [process.pid], shape, 10_000)
    t.equal(again.atSink, 40, 'a second run counts only its own messages')
    t.ok(again.cpuMsPerMsg >= 0 && again.peakMemBytes > 0, 'a relay tree gets CPU and memory figures')
  },
)

t.test('a drain ends when every spooled message reached the sink and times the first arrival', { skip }, async (t) => {
  const sink = await startSink()
  t.teardown(() => sink.stop())
  const returnedAt = performance.now()
  // Stands in for a relay emptying its spool once the backend is back: 30 messages, 50 ms after the return.
  let left = 30
  const drainer = new Promise((r) => setTimeout(r, 50)).then(() =>
    runLoad({ host: '127.0.0.1', port: sink.port, ...shape, count: 30 }).then((r) => {
      left -= r.ok
    }),
  )
  const d = await measureDrain(sink, [process.pid], 30, () => left, returnedAt, 10_000)
  await drainer
  t.equal(d.atSink, 30)
  t.ok(d.firstAfterMs !== undefined && d.firstAfterMs >= 50, `first arrival ${d.firstAfterMs} ms after the return`)
  t.ok(d.msgsPerSec > 0)
  t.same(d.problems, [])
})

t.test('a drain that cannot finish stops at its cap and says how far it got', { skip }, async (t) => {
  const sink = await startSink()
  t.teardown(() => sink.stop())
  const d = await measureDrain(sink, [process.pid], 5, () => 5, performance.now(), 300)
  t.equal(d.atSink, 0)
  t.match(d.problems[0], /drained 0 of 5 spooled messages within 300 ms/)
})
