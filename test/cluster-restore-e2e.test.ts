// `mxgate restore` made on one node re-admits the backend on the node whose own breaker ejected it (issue 8, "Blame"
// item 2): two real `mxgate start` processes on one real redis-server, real fake backends, the real CLI.
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { countsByBackend, eventuallyAsync, sendSpread, startCluster, statesOf } from './helpers/mxgate-cluster'
import { runMxgate } from './helpers/mxgate-process'
import { startRedis } from './helpers/redis-server'

const TOKEN = 'restore-e2e-secret'

t.test('a restore on node B re-admits a backend node A’s own breaker ejected, on A too', async (t) => {
  const mx1 = new FakeBackend({ id: 'mx1', faults: [{ stage: 'connect', action: 'refuse' }] })
  const mx2 = new FakeBackend({ id: 'mx2' })
  await Promise.all([mx1.start(), mx2.start()])
  t.teardown(() => Promise.all([mx1.stop(), mx2.stop()]))
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const c = await startCluster({
    redisUrl: redis.url,
    backends: [mx1, mx2],
    token: TOKEN,
    labels: ['A', 'B'],
    // Ejected for ten minutes: only the restore can bring mx1 back within this test. Probation at half its weight,
    // so that 30 messages reach it (at the default 5% share one in four runs would send it none).
    ini: '[breaker]\nmin_volume = 3\nejection_time = 10m\nmax_ejection_time = 20m\nslow_start = 30s\nprobation_share = 50%\n',
  })
  t.teardown(() => c.stop())
  const [A, B] = [c.node('A'), c.node('B')]

  // Mail through A only, so the ejection is A's own breaker's decision; B follows it through Redis.
  for (let round = 0; round < 10 && (await statesOf(A)).mx1 !== 'ejected'; round++) {
    const batch = await sendSpread([A], `trip-${round}`, 6, 3)
    t.ok(
      batch.results.every((r) => r.ok),
      `round ${round}: every message accepted (failover to mx2)`,
    )
  }
  t.equal((await statesOf(A)).mx1, 'ejected', 'A’s breaker ejected mx1')
  t.ok(await eventuallyAsync(async () => (await statesOf(B)).mx1 === 'ejected', 5000), 'B follows')

  await mx1.setFaults([])
  const restored = await runMxgate(['restore', 'mx1', '--admin', B.adminUrl, '--token', TOKEN], {
    MXGATE_ADMIN_TOKEN: '',
    MXGATE_ADMIN_URL: '',
    NO_COLOR: '1',
  })
  t.equal(restored.code, 0, `restore exits 0 (stderr: ${restored.stderr})`)
  t.ok(
    await eventuallyAsync(async () => (await statesOf(A)).mx1 === 'probation', 5000),
    'A re-admits mx1 (probation) without waiting for its own ten-minute ejection',
  )
  const after = await sendSpread([A], 'after-restore', 30, 3)
  t.ok(after.results.every((r) => r.ok))
  t.ok(countsByBackend([mx1], after.ids).mx1! > 0, 'A sends mx1 mail again')
})
