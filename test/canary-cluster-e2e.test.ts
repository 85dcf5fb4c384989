// Canary returns that reach another node or worker (README "Canaries"): real mxgate processes, a real redis-server,
// fake backends over loopback SMTP forwarding every canary to one node only (SMTP return address, or webhook);
// the node that sent a canary counts it returned, with its own round trip, and a Redis outage produces no loss.
import t, { type Test } from 'tap'
import type { BackendView } from '../src/admin/types'
import { FakeBackend } from '../src/testing/fake-backend'
import { api, backendsOf, type ClusterNode, eventuallyAsync, startCluster } from './helpers/mxgate-cluster'
import { startMxgate, waitForLogs } from './helpers/mxgate-process'
import { startRedis } from './helpers/redis-server'

const RETURN = 'canary-return@example.com'
const HOOK = 'canary-cluster-webhook-token-0123'
const TOKEN = 'canary-cluster-admin-token'
// The timeout leaves room for the nodes' Redis reconnects (capped at 2 s each) after an outage.
const INI = `[canary]
address = canary@example.com
return_address = ${RETURN}
interval = 250ms
timeout = 5s
webhook_token = ${HOOK}
`

async function fakes(t: Test, ids: string[]): Promise<FakeBackend[]> {
  const out: FakeBackend[] = []
  for (const id of ids) {
    const b = new FakeBackend({ id })
    await b.start()
    t.teardown(() => b.stop())
    out.push(b)
  }
  return out
}

type Canary = NonNullable<BackendView['canary']>

async function canaries(node: ClusterNode): Promise<Map<string, Canary>> {
  const { byId } = await backendsOf(node)
  return new Map([...byId].map(([id, b]) => [id, b.canary!]))
}

async function metric(node: ClusterNode, name: string): Promise<number> {
  const r = await api(node, 'GET', '/metrics')
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(String(r.body))
  return m ? Number(m[1]) : Number.NaN
}

const lostLines = (node: ClusterNode) => node.proc.logs.filter((l) => String(l.msg).includes('lost after 250'))

t.test(
  "two nodes sharing Redis: A's canaries returned through B's SMTP listener and B's webhook count on A",
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const [mx1, mx2] = (await fakes(t, ['mx1', 'mx2'])) as [FakeBackend, FakeBackend]
    const cluster = await startCluster({
      redisUrl: redis.url,
      backends: [mx1, mx2],
      token: TOKEN,
      ini: INI,
      labels: ['A', 'B'],
    })
    t.teardown(() => cluster.stop())
    const a = cluster.node('A')
    const b = cluster.node('B')
    // Every canary of either node comes back to B only: mx1 by SMTP, mx2 by the webhook.
    mx1.forwardCanaries({ smtp: { host: '127.0.0.1', port: b.proc.port, to: RETURN } })
    mx2.forwardCanaries({ webhook: { url: b.adminUrl, token: HOOK } })

    // 30 rounds of 250 ms: well past the first canaries' 5 s timeout.
    const enough = async (n: number) => [...(await canaries(a)).values()].every((c) => c.returned >= n)
    t.ok(await eventuallyAsync(() => enough(30), 60_000), "A counts its canaries returned through B's SMTP and webhook")
    const onA = await canaries(a)
    for (const id of ['mx1', 'mx2']) {
      const c = onA.get(id)!
      t.equal(c.lost, 0, `${id}: none of A's canaries counted lost`)
      t.type(c.lastRoundTripMs, 'number', `${id}: round trip recorded on A`)
    }
    t.same(lostLines(a), [], 'A logs no loss')
    t.ok(
      a.proc.logs.every((l) => l.to !== 'ejected'),
      'no backend ejected on A',
    )
    t.equal(await metric(b, 'mxgate_canary_unknown_returns_total'), 0, "B does not count A's tokens as unknown")
    t.ok((await metric(a, 'mxgate_canary_returned_total{backend="mx1"}')) >= 30, 'A exports the returns')

    t.test(
      'a Redis outage during the timeout produces no loss; canaries it could not judge are unjudged',
      async (t) => {
        await redis.kill()
        // A sends on; its canaries come back to B, which cannot share them: A cannot tell, and must not call them lost.
        const unjudged = async () => [...(await canaries(a)).values()].some((c) => c.unjudged > 0)
        t.ok(await eventuallyAsync(unjudged, 30_000), 'A calls canaries unjudged while Redis is away')
        await redis.restart()
        const before = await canaries(a)
        const more = async () => {
          const now = await canaries(a)
          return [...now].every(([id, c]) => c.returned >= before.get(id)!.returned + 30)
        }
        t.ok(await eventuallyAsync(more, 60_000), 'A counts returns through B again once Redis is back')
        for (const node of [a, b])
          for (const [id, c] of await canaries(node)) t.equal(c.lost, 0, `${node.label} ${id}: no canary counted lost`)
        t.same([...lostLines(a), ...lostLines(b)], [], 'no loss logged on either node')
        t.ok(
          [...a.proc.logs, ...b.proc.logs].every((l) => l.to !== 'ejected'),
          'no backend ejected',
        )
      },
    )
  },
)

t.test('one node with two Haraka workers: canaries whose return reaches the other worker count', async (t) => {
  const [mx1, mx2] = (await fakes(t, ['mx1', 'mx2'])) as [FakeBackend, FakeBackend]
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port},mx2=127.0.0.1:${mx2.port}`,
    env: {
      MXGATE_WORKERS: '2',
      MXGATE_LOG_LEVEL: 'debug',
      MXGATE_CANARY_ADDRESS: 'canary@example.com',
      MXGATE_CANARY_RETURN: RETURN,
      MXGATE_CANARY_INTERVAL: '250ms',
      MXGATE_CANARY_TIMEOUT: '3s',
    },
  })
  t.teardown(() => node.stop())
  for (const b of [mx1, mx2]) b.forwardCanaries({ smtp: { host: '127.0.0.1', port: node.port, to: RETURN } })
  const returned = (logs: Record<string, unknown>[]) => logs.filter((l) => l.msg === 'canary returned')
  // Two workers × two backends × 4 a second: 100 returns is past the first canaries' 3 s timeout.
  await waitForLogs(
    node,
    (logs) => {
      const r = returned(logs)
      return r.length >= 100 && r.some((l) => l.via === 'another process')
    },
    'canaries returned, some through the other worker',
    60_000,
  )
  const r = returned(node.logs)
  const senders = new Set(r.map((l) => l.pid))
  const crossed = r.filter((l) => l.via === 'another process').length
  t.equal(senders.size, 2, 'both workers send canaries and count their returns')
  t.ok(crossed > 0, `${crossed} of ${r.length} returns reached the other worker and counted on the sender`)
  t.same(
    node.logs.filter((l) => String(l.msg).includes('lost after 250')),
    [],
    'no canary counted lost',
  )
})
