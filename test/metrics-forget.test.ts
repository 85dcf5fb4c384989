// A backend removed by a reload leaves no metric series behind: every counter, histogram or gauge labelled with it.
import { Counter, Histogram } from 'prom-client'
import t from 'tap'
import { Metrics } from '../src/metrics'
import type { AttemptRecord } from '../src/relay/relay'

function attempt(backendId: string, verdict: AttemptRecord['verdict']): AttemptRecord {
  return { backendId, verdict, stage: verdict === 'delivered' ? 'dot' : 'rcpt', detail: '', elapsedMs: 5 }
}

t.test('forgetBackend removes every series labelled with the backend and keeps the others', async (t) => {
  const m = new Metrics()
  m.attempt(attempt('mx1', 'delivered'))
  m.attempt(attempt('mx2', 'delivered'))
  m.attempt(attempt('mx2', 'backend'))
  m.sessionWait('mx2', 'saturated')
  const ejections = new Counter({
    name: 'test_ejections_total',
    help: 'x',
    labelNames: ['backend', 'reason'],
    registers: [m.registry],
  })
  ejections.labels('mx2', 'detector').inc()
  const h = new Histogram({ name: 'test_seconds', help: 'x', labelNames: ['backend'], registers: [m.registry] })
  h.labels('mx2').observe(1)
  h.labels('mx1').observe(1)
  t.match(await m.registry.metrics(), /backend="mx2"/)
  await m.forgetBackend('mx2')
  const text = await m.registry.metrics()
  t.notMatch(text, /backend="mx2"/, 'no series of mx2 is left')
  t.match(
    text,
    /mxgate_backend_attempts_total\{backend="mx1",verdict="delivered",stage="dot"\} 1/,
    'mx1 keeps its counts',
  )
  t.match(text, /test_seconds_count\{backend="mx1"\} 1/)
  m.attempt(attempt('mx2', 'delivered'))
  t.match(
    await m.registry.metrics(),
    /backend="mx2",verdict="delivered",stage="dot"\} 1/,
    'a backend added again starts at 0',
  )
})
