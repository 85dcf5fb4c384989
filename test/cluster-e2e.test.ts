// mxgate as a cluster: three real `mxgate start` processes sharing one real redis-server, real fake backends, the
// real `mxgate` CLI. What an operator does on one node must hold on every node, survive restarts and Redis outages,
// and be refused without the right token.
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import {
  api,
  backendsOf,
  type ClusterNode,
  countsByBackend,
  eventuallyAsync,
  type MxgateCluster,
  type StartClusterOptions,
  sendSpread,
  startCluster,
  statesOf,
} from './helpers/mxgate-cluster'
import { runMxgate } from './helpers/mxgate-process'
import { freePort } from './helpers/ports'
import { type RedisProcess, startRedis } from './helpers/redis-server'

// About 80 s on an idle machine; a shared, loaded one (load average 10 on 2 cores) stretched it to 117 s, so give
// the file more room than the project's 120 s default rather than have it killed half-way through a teardown.
t.setTimeout(240_000)

const TOKEN = 'cluster-e2e-secret'
const CONCURRENCY = 10
const SETTLE_ROUND_MS = 250
/** How long states may take to converge after Redis returns (usually 3–6 s; ejection backoff is capped at 2 s). */
const SETTLE_MS = 30_000

async function backends(t: Test, ids: string[]): Promise<FakeBackend[]> {
  const out: FakeBackend[] = []
  for (const id of ids) {
    const b = new FakeBackend({ id })
    await b.start()
    t.teardown(() => b.stop())
    out.push(b)
  }
  return out
}

async function redis(t: Test): Promise<RedisProcess> {
  // Persistent, so a killed and restarted Redis still holds what the nodes wrote before (as production Redis does).
  const r = await startRedis({ persist: true })
  t.teardown(() => r.stop())
  return r
}

async function cluster(t: Test, opts: StartClusterOptions): Promise<MxgateCluster> {
  const c = await startCluster(opts)
  t.teardown(() => c.stop())
  return c
}

/**
 * `mxgate CMD ARGS --admin URL [--token T]`, with no admin URL or token inherited from this environment, and no
 * default token file (a ./spool/admin.token left in the checkout by a local `mxgate start` would otherwise be sent).
 */
function cli(args: string[], env: Record<string, string> = {}) {
  const noTokenFile = { MXGATE_ADMIN_TOKEN_FILE: '', MXGATE_SPOOL_DIR: '/nonexistent/mxgate-cli-spool' }
  return runMxgate(args, { MXGATE_ADMIN_TOKEN: '', MXGATE_ADMIN_URL: '', NO_COLOR: '1', ...noTokenFile, ...env })
}

const adminArgs = (node: ClusterNode, token: string | null = TOKEN) =>
  token === null ? ['--admin', node.adminUrl] : ['--admin', node.adminUrl, '--token', token]

/** The node's mxgate_redis_up gauge from GET /metrics, or null when it is missing. */
async function redisUpMetric(node: ClusterNode): Promise<number | null> {
  const res = await api(node, 'GET', '/metrics')
  const m = /^mxgate_redis_up(?:\{\})? (\d+)$/m.exec(String(res.body))
  return m ? Number(m[1]) : null
}

async function allStatesAre(nodes: ClusterNode[], id: string, state: string): Promise<boolean> {
  const states = await Promise.all(nodes.map((n) => statesOf(n)))
  return states.every((s) => s[id] === state)
}

t.test('eject, restart, restore: one operator command acts on every node and survives restarts', async (t) => {
  const bs = await backends(t, ['mx1', 'mx2', 'mx3'])
  const r = await redis(t)
  const c = await cluster(t, {
    redisUrl: r.url,
    backends: bs,
    token: TOKEN,
    // mx1 weighs as much as the other two together, so its ramp (10% → 100% over slow_start) stands out clearly.
    weights: { mx1: 200 },
    ini: '[breaker]\nslow_start = 12s\nprobation_messages = 0\n',
  })
  const [A, B, C] = [c.node('A'), c.node('B'), c.node('C')]

  const before = await sendSpread([B, C], 'before', 30, CONCURRENCY)
  t.ok(
    before.results.every((x) => x.ok),
    'all messages accepted before the ejection',
  )
  t.ok(countsByBackend(bs, before.ids).mx1! > 0, 'mx1 takes its share before the ejection')

  const ejected = await cli(['eject', 'mx1', '--reason', 'bad deploy INC-42', ...adminArgs(A)])
  t.equal(ejected.code, 0, `eject exits 0 (stderr: ${ejected.stderr})`)
  t.match(ejected.stdout, /^ejected mx1: now manual-ejected/)
  t.equal(ejected.stderr, '')

  // The eject reaches B and C through Redis (pub/sub, or the poll if a note is lost): wait until both show it.
  const ejectedAt = Date.now()
  t.ok(
    await eventuallyAsync(() => allStatesAre([B, C], 'mx1', 'manual-ejected'), 5000),
    'nodes B and C show mx1 manual-ejected',
  )
  t.comment(`the eject on A reached B and C within ${Date.now() - ejectedAt} ms`)
  const after = await sendSpread([B, C], 'after-eject', 60, CONCURRENCY)
  t.ok(
    after.results.every((x) => x.ok),
    'all messages accepted after the ejection',
  )
  const afterCounts = countsByBackend(bs, after.ids)
  t.equal(afterCounts.mx1, 0, 'nodes B and C send mx1 nothing once they know of the eject on A')
  t.equal(afterCounts.mx2! + afterCounts.mx3!, 60, 'the other backends take every message')
  for (const n of [B, C]) {
    const view = (await backendsOf(n)).byId.get('mx1')
    t.equal(view?.state, 'manual-ejected', `node ${n.label} shows mx1 manual-ejected`)
    t.equal(view?.reason, 'bad deploy INC-42', `node ${n.label} shows the operator's reason`)
    t.equal(view?.by, 'admin', `node ${n.label} shows who ejected it (the token's name)`)
  }

  await c.restart()
  const [A2, B2, C2] = [c.node('A'), c.node('B'), c.node('C')]
  const restarted = await sendSpread([A2, B2, C2], 'after-restart', 60, CONCURRENCY)
  t.ok(
    restarted.results.every((x) => x.ok),
    'all messages accepted after the restart',
  )
  t.equal(countsByBackend(bs, restarted.ids).mx1, 0, 'no node sends mx1 anything after all three restarted')
  for (const n of c.nodes) {
    t.equal((await statesOf(n)).mx1, 'manual-ejected', `node ${n.label} still shows mx1 manual-ejected after restart`)
  }

  const restored = await cli(['restore', 'mx1', ...adminArgs(C2)])
  t.equal(restored.code, 0, `restore exits 0 (stderr: ${restored.stderr})`)
  t.match(restored.stdout, /^restored mx1: now probation/)
  t.ok(
    await eventuallyAsync(() => allStatesAre(c.nodes, 'mx1', 'probation'), 5000),
    'every node ramps mx1 up (probation)',
  )

  // Probation: mx1's weight starts at 10% and grows to 100% over slow_start, so its share grows.
  const early = await sendSpread(c.nodes, 'probation', 60, CONCURRENCY)
  t.ok(
    early.results.every((x) => x.ok),
    'all messages accepted during probation',
  )
  t.ok(await eventuallyAsync(() => allStatesAre(c.nodes, 'mx1', 'admitted'), 20_000), 'every node admits mx1 fully')
  const late = await sendSpread(c.nodes, 'admitted', 90, CONCURRENCY)
  t.ok(
    late.results.every((x) => x.ok),
    'all messages accepted after probation',
  )
  const earlyCount = countsByBackend(bs, early.ids).mx1!
  const lateCount = countsByBackend(bs, late.ids).mx1!
  const pct = (n: number, of: number) => Math.round((100 * n) / of)
  t.ok(lateCount > 0, `traffic to mx1 resumes (${lateCount} of 90)`)
  t.ok(
    pct(earlyCount, 60) < pct(lateCount, 90),
    `mx1's share grows: ${pct(earlyCount, 60)}% during probation, ${pct(lateCount, 90)}% once admitted (weight 50%)`,
  )
})

t.test('a Redis outage under load loses nothing and nodes go on deciding alone', async (t) => {
  const bs = await backends(t, ['mx1', 'mx2', 'mx3'])
  const mx3 = bs[2]!
  const r = await redis(t)
  const c = await cluster(t, {
    redisUrl: r.url,
    backends: bs,
    token: TOKEN,
    // Short enough that a failing backend is ejected, probed and ejected again within the test.
    ini: [
      '[breaker]',
      'window = 2s',
      'window_buckets = 4',
      'min_volume = 3',
      'ejection_time = 500ms',
      'max_ejection_time = 2s',
      'slow_start = 1s',
      'probation_messages = 0',
      '[spool]',
      'retry_first = 200ms',
      'retry_max = 1s',
      '',
    ].join('\n'),
  })

  // Mid-load: Redis dies after 60 answers; after 100, mx3 starts refusing every message, so only decisions each
  // node makes alone can eject it.
  const outage: { redisKilled: Promise<void> | null; mx3Broke: Promise<void> | null } = {
    redisKilled: null,
    mx3Broke: null,
  }
  const loadStarted = Date.now()
  const load = await sendSpread(c.nodes, 'outage', 300, CONCURRENCY, async (done) => {
    if (done === 60) outage.redisKilled = r.kill()
    if (done === 100) {
      await outage.redisKilled
      outage.mx3Broke = mx3.setFaults([
        { stage: 'mail', action: 'reply', reply: '451 4.3.0 Local configuration error' },
      ])
    }
  })
  await outage.redisKilled
  await outage.mx3Broke
  t.comment(`300 messages over 3 nodes in ${Date.now() - loadStarted} ms, Redis down from the 60th`)
  t.ok(outage.redisKilled && outage.mx3Broke, 'Redis was killed and mx3 broke while the load ran')

  const refused = load.results.filter((x) => !x.ok)
  t.same(
    refused.map((x) => x.reply),
    [],
    'every one of 300 messages was answered 250: no 4xx because Redis went away',
  )

  for (const n of c.nodes) {
    t.ok(
      n.proc.logs.some((l) => /Redis unreachable/.test(String(l.msg))),
      `node ${n.label} says it goes on alone without Redis`,
    )
    const own = n.proc.logs.filter(
      (l) => l.backend === 'mx3' && l.to === 'ejected' && !/^ejected by /.test(String(l.reason)),
    )
    t.ok(own.length > 0, `node ${n.label} ejected the failing mx3 on its own evidence (${own.length}x)`)
    t.not((await statesOf(n)).mx3, 'admitted', `node ${n.label} does not admit mx3 while it fails`)
    t.equal(await redisUpMetric(n), 0, `node ${n.label} reports mxgate_redis_up 0`)
  }

  // An operator change during the outage reaches only the node it was made on, until Redis is back.
  const duringOutage = await api(c.node('B'), 'POST', '/api/backends/mx2/eject', {
    body: { reason: 'made during the outage' },
    token: TOKEN,
  })
  t.equal(duringOutage.status, 200, `eject on B during the outage is accepted: ${JSON.stringify(duringOutage.body)}`)

  await mx3.setFaults([])
  await r.restart()

  // mx3 comes back only through probes and a trial message, so keep a little mail flowing while states settle.
  const trickleIds: string[] = []
  const trickleRefused: string[] = []
  const expected = { mx1: 'admitted', mx2: 'manual-ejected', mx3: 'admitted' }
  let converged = false
  let last: Record<string, string>[] = []
  const settleStarted = Date.now()
  // Bounded by time, not rounds: on a busy machine each round takes longer while the ejection timers do not.
  for (let round = 0; Date.now() - settleStarted < SETTLE_MS && !converged; round++) {
    const trickle = await sendSpread(c.nodes, `settle-${round}`, 6, 6)
    trickleIds.push(...trickle.ids)
    trickleRefused.push(...trickle.results.filter((x) => !x.ok).map((x) => x.reply))
    last = await Promise.all(c.nodes.map((n) => statesOf(n)))
    converged = last.every((s) => JSON.stringify(s) === JSON.stringify(expected))
    // Paces the trickle of mail that lets probes and trial messages run; the loop ends on convergence (bounded).
    if (!converged) await sleep(SETTLE_ROUND_MS)
  }
  if (!converged)
    for (const n of c.nodes)
      for (const l of n.proc.logs.filter((l) => l.backend === 'mx3' && l.to))
        t.comment(`node ${n.label} mx3 → ${String(l.to)}: ${String(l.reason ?? l.msg)}`)
  t.same(last, [expected, expected, expected], 'after Redis returns every node reports the same states')
  t.comment(`states converged ${Date.now() - settleStarted} ms after Redis came back`)
  for (const n of c.nodes) t.equal(await redisUpMetric(n), 1, `node ${n.label} reports mxgate_redis_up 1 again`)
  t.same(trickleRefused, [], `mail kept flowing while states settled (${trickleIds.length} messages)`)

  const all = [...load.ids, ...trickleIds]
  const delivered = () => {
    const got = new Set(bs.flatMap((b) => b.received.map((m) => m.messageId)))
    return all.filter((id) => !got.has(id))
  }
  // Anything that went to a spool is retried within a second or two.
  await eventuallyAsync(async () => delivered().length === 0, 15_000)
  t.same(delivered(), [], `every acked Message-ID reached a backend (${all.length} messages, none lost)`)
  const counts = countsByBackend(bs, load.ids)
  t.ok(counts.mx1! > 0 && counts.mx2! > 0, `the healthy backends carried the load (${JSON.stringify(counts)})`)
  t.ok(mx3.counters.faultsInjected > 0, 'mx3 really refused messages during the outage')
})

// Both halves share one cluster: what they prove is that a refused change leaves every node as it was.
t.test('operator mistakes are refused and change nothing', async (t) => {
  const bs = await backends(t, ['mx1', 'mx2'])
  const r = await redis(t)
  const c = await cluster(t, {
    redisUrl: r.url,
    backends: bs,
    token: TOKEN,
    ini: '[breaker]\nslow_start = 1s\nprobation_messages = 0\n',
  })
  const A = c.node('A')

  const nothingChanged = async (t: Test, tag: string) => {
    for (const n of c.nodes) {
      const views = (await backendsOf(n)).byId
      for (const id of ['mx1', 'mx2']) {
        t.equal(views.get(id)?.state, 'admitted', `node ${n.label}: ${id} still admitted`)
        t.equal(views.get(id)?.by, null, `node ${n.label}: ${id} has no manual state`)
      }
    }
    const batch = await sendSpread(c.nodes, tag, 30, CONCURRENCY)
    t.ok(
      batch.results.every((x) => x.ok),
      'mail flows as before',
    )
    t.ok(countsByBackend(bs, batch.ids).mx1! > 0, 'mx1 still gets traffic')
  }

  t.test('changes without the right token are refused with 401', async (t) => {
    const attempts: [string, Parameters<typeof api>[3]][] = [
      ['no Authorization header', {}],
      ['a wrong token', { token: 'not-the-secret' }],
      ['another scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
      ['an empty bearer', { authorization: 'Bearer ' }],
    ]
    for (const [what, auth] of attempts) {
      for (const [action, body] of [
        ['eject', { reason: 'should not happen' }],
        ['drain', { reason: 'should not happen' }],
        ['restore', {}],
      ] as const) {
        const res = await api(A, 'POST', `/api/backends/mx1/${action}`, { ...auth, body })
        t.equal(res.status, 401, `${action} with ${what} → 401`)
        t.match((res.body as { error?: string }).error, /token/, `${action} with ${what} says a token is needed`)
      }
    }

    const noToken = await cli(['eject', 'mx1', '--reason', 'x', ...adminArgs(A, null)])
    t.equal(noToken.code, 1, 'CLI eject without a token exits 1')
    t.match(
      noToken.stderr,
      /^mxgate eject: refused by http:\/\/127\.0\.0\.1:\d+ \(401\): .*no token was sent: pass --token T/,
    )
    const wrong = await cli(['drain', 'mx1', ...adminArgs(A, 'wrong')])
    t.equal(wrong.code, 1, 'CLI drain with a wrong token exits 1')
    t.match(wrong.stderr, /^mxgate drain: refused by .* \(401\): the token does not match/)

    await nothingChanged(t, 'after-401')
  })

  t.test('every CLI error path exits non-zero with one clear line on stderr', async (t) => {
    const closedPort = await freePort()
    // Something that answers HTTP but is not mxgate's admin API.
    const notMxgate = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<html>hello</html>')
    })
    await new Promise<void>((resolve) => notMxgate.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>((resolve) => notMxgate.close(() => resolve())))
    const addr = notMxgate.address()
    const notMxgateUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`

    const cases: { what: string; args: string[]; code: number; stderr: RegExp }[] = [
      {
        what: 'unreachable node',
        args: ['eject', 'mx1', '--reason', 'x', '--admin', `http://127.0.0.1:${closedPort}`, '--token', TOKEN],
        code: 1,
        stderr:
          /^mxgate eject: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: connection refused; is mxgate running\?/,
      },
      {
        what: 'status of an unreachable node',
        args: ['status', '--admin', `http://127.0.0.1:${closedPort}`],
        code: 1,
        stderr: /^mxgate status: cannot reach the admin API at .*connection refused/,
      },
      {
        what: 'not the admin API',
        args: ['status', '--admin', notMxgateUrl],
        code: 1,
        stderr:
          /^mxgate status: .* answered GET \/api\/backends with 200 and text\/html, not the mxgate admin API's JSON; check --admin/,
      },
      {
        what: 'bad --admin URL',
        args: ['eject', 'mx1', '--reason', 'x', '--admin', 'localhost:8025'],
        code: 2,
        stderr: /^mxgate eject: --admin must be an http:\/\/ or https:\/\/ URL|^mxgate eject: --admin must be a URL/,
      },
      {
        what: 'unknown backend',
        args: ['eject', 'mx9', '--reason', 'x', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate eject: .*unknown backend "mx9"; known: mx1, mx2/,
      },
      {
        what: 'restore of an unknown backend',
        args: ['restore', 'nope', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate restore: .*unknown backend "nope"/,
      },
      {
        what: 'eject without a reason',
        args: ['eject', 'mx1', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate eject: --reason is required: say why you eject mx1/,
      },
      {
        what: 'eject without a backend',
        args: ['eject', '--reason', 'x', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate eject: which backend\? usage: mxgate eject ID --reason TEXT/,
      },
      {
        what: 'a bad --for',
        args: ['eject', 'mx1', '--reason', 'x', '--for', 'soon', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate eject: for must be a duration with a unit/,
      },
      {
        what: 'an unknown option',
        args: ['drain', 'mx1', '--force', ...adminArgs(A)],
        code: 2,
        stderr: /^mxgate drain: unknown option --force/,
      },
      {
        what: 'an option without its value',
        args: ['eject', 'mx1', '--reason'],
        code: 2,
        stderr: /^mxgate eject: --reason needs a value/,
      },
      {
        what: 'a wrong token',
        args: ['restore', 'mx1', ...adminArgs(A, 'wrong')],
        code: 1,
        stderr: /^mxgate restore: refused by .* \(401\)/,
      },
    ]
    // Independent commands: run them side by side (each is a node process start).
    const results = await Promise.all(cases.map((k) => cli(k.args)))
    cases.forEach((k, i) => {
      const res = results[i]!
      t.equal(res.code, k.code, `${k.what}: exit ${k.code}`)
      t.match(res.stderr, k.stderr, `${k.what}: says what is wrong and how to fix it`)
      t.equal(res.stderr.trimEnd().split('\n').length, 1, `${k.what}: one line, no stack trace`)
      t.equal(res.stdout, '', `${k.what}: nothing on stdout`)
    })
    await nothingChanged(t, 'after-cli-errors')
  })
})
