// The admin HTTP API over a real loopback socket: reads, changes reaching the port with the right actor, and the
// exact error answers (400/404/405/413/500/504) — always JSON, never a stack trace.
import { Counter } from 'prom-client'
import t from 'tap'
import { parseTokens } from '../src/admin/auth'
import { MAX_BODY_BYTES, startAdminServer } from '../src/admin/server'
import { ReloadRefusedError } from '../src/admin/types'
import { backendView, logSink, MemoryAdminPort, request, spoolItem, startTestAdmin, T0 } from './admin-helpers'

const TOKEN = 'ops-secret-0123456789'

t.test('backend reads need no token even when tokens are configured (spool reads do: hostile/admin-api)', async (t) => {
  const { url } = await startTestAdmin(t, { tokens: `alice:${TOKEN}` })
  const list = await request(url, 'GET', '/api/backends', { token: null })
  t.equal(list.status, 200)
  t.match(list.headers['content-type'], /^application\/json/)
  t.equal(list.headers['x-mxgate-node'], 'node-a')
  const body = list.json as { node: string; backends: { id: string }[] }
  t.equal(body.node, 'node-a')
  t.same(
    body.backends.map((b) => b.id),
    ['mx1', 'mx2', 'mx3'],
  )
  const one = await request(url, 'GET', '/api/backends/mx2', { token: null })
  t.equal(one.status, 200)
  t.same(one.json, backendView('mx2'))
  const trailing = await request(url, 'GET', '/api/backends/', { token: null })
  t.equal(trailing.status, 200, 'a trailing slash is the same endpoint')
})

t.test('healthz answers ok, or 503 when the node says it is not alive', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const ok = await request(url, 'GET', '/healthz')
  t.equal(ok.status, 200)
  t.equal(ok.text, 'ok\n')
  port.alive = false
  const down = await request(url, 'GET', '/healthz')
  t.equal(down.status, 503)
  t.equal(down.text, 'unhealthy\n')
})

t.test('readyz is 200 when ready and 503 with the reasons when not (the load balancer check)', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const ready = await request(url, 'GET', '/readyz')
  t.equal(ready.status, 200)
  t.same(ready.json, { node: 'node-a', ready: true, reasons: [] })
  port.ready = { ready: false, reasons: ['spool is over its size limit (50 MB)', 'no admitted backend'] }
  const notReady = await request(url, 'GET', '/readyz')
  t.equal(notReady.status, 503)
  t.same(notReady.json, {
    node: 'node-a',
    ready: false,
    reasons: ['spool is over its size limit (50 MB)', 'no admitted backend'],
  })
  const head = await request(url, 'HEAD', '/readyz')
  t.equal(head.status, 503, 'HEAD works for load balancers that probe with it')
  t.equal(head.text, '')
})

t.test('metrics serves the port registry with its own content type', async (t) => {
  const port = new MemoryAdminPort()
  const c = new Counter({ name: 'mxgate_test_total', help: 'test counter', registers: [port.metrics] })
  c.inc(3)
  const { url } = await startTestAdmin(t, { port })
  const res = await request(url, 'GET', '/metrics')
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], port.metrics.contentType)
  t.match(res.text, /^mxgate_test_total 3$/m)
})

t.test('spool reads: list and one message with its errors', async (t) => {
  const port = new MemoryAdminPort()
  port.messages.set('m1', spoolItem('m1'))
  const { url } = await startTestAdmin(t, { port })
  const list = await request(url, 'GET', '/api/spool')
  t.equal(list.status, 200)
  const { lastErrors: _, ...item } = spoolItem('m1')
  t.same(list.json, { node: 'node-a', messages: [item] })
  const show = await request(url, 'GET', '/api/spool/m1')
  t.same(show.json, spoolItem('m1'))
  const missing = await request(url, 'GET', '/api/spool/nope')
  t.equal(missing.status, 404)
  t.same(missing.json, { error: 'unknown message "nope"; known: m1' })
})

t.test(
  'eject, drain and restore reach the port with the token name as actor and answer the updated view',
  async (t) => {
    const { url, port } = await startTestAdmin(t, { tokens: `alice:${TOKEN}` })
    const eject = await request(url, 'POST', '/api/backends/mx1/eject', {
      token: TOKEN,
      body: { reason: 'bad deploy, tickets 123', for: '30m' },
    })
    t.equal(eject.status, 200)
    t.match(eject.json, { id: 'mx1', state: 'manual-ejected', reason: 'bad deploy, tickets 123', by: 'alice' })
    t.same(port.calls[0], {
      op: 'eject',
      id: 'mx1',
      reason: 'bad deploy, tickets 123',
      forMs: 1_800_000,
      actor: { by: 'alice', from: '127.0.0.1' },
    })

    const ms = await request(url, 'POST', '/api/backends/mx1/eject', {
      token: TOKEN,
      body: { reason: 'x', for: 90_000 },
    })
    t.equal(ms.status, 200)
    t.equal(port.calls[1]?.forMs, 90_000, 'a number is milliseconds')
    const forever = await request(url, 'POST', '/api/backends/mx1/eject', { token: TOKEN, body: { reason: 'x' } })
    t.equal(forever.status, 200)
    t.equal(port.calls[2]?.forMs, null, 'without for: until restored')

    const drain = await request(url, 'POST', '/api/backends/mx2/drain', { token: TOKEN, body: { reason: 'reboot' } })
    t.match(drain.json, { id: 'mx2', state: 'draining', reason: 'reboot' })
    const drainNoReason = await request(url, 'POST', '/api/backends/mx3/drain', { token: TOKEN })
    t.equal(drainNoReason.status, 200, 'drain takes an empty body')
    t.equal(port.calls[4]?.reason, 'no reason given')

    const restore = await request(url, 'POST', '/api/backends/mx1/restore', { token: TOKEN, body: {} })
    t.match(restore.json, { id: 'mx1', state: 'probation' })
    t.same(
      port.calls.map((c) => [c.op, c.id, c.actor.by]),
      [
        ['eject', 'mx1', 'alice'],
        ['eject', 'mx1', 'alice'],
        ['eject', 'mx1', 'alice'],
        ['drain', 'mx2', 'alice'],
        ['drain', 'mx3', 'alice'],
        ['restore', 'mx1', 'alice'],
      ],
    )
  },
)

t.test('spool changes: flush all or one, hold, release, bounce', async (t) => {
  const port = new MemoryAdminPort()
  port.messages.set('m1', spoolItem('m1'))
  port.messages.set('m2', spoolItem('m2'))
  const { url } = await startTestAdmin(t, { port, tokens: TOKEN })
  t.same((await request(url, 'POST', '/api/spool/flush', { token: TOKEN })).json, { node: 'node-a', scheduled: 2 })
  t.same((await request(url, 'POST', '/api/spool/flush', { token: TOKEN, body: { id: 'm1' } })).json, {
    node: 'node-a',
    scheduled: 1,
  })
  t.match((await request(url, 'POST', '/api/spool/m1/hold', { token: TOKEN })).json, { id: 'm1', held: true })
  t.match((await request(url, 'POST', '/api/spool/m1/release', { token: TOKEN })).json, { id: 'm1', held: false })
  t.same((await request(url, 'POST', '/api/spool/m2/bounce', { token: TOKEN })).json, { id: 'm2', bounced: true })
  t.same([...port.messages.keys()], ['m1'])
  const missing = await request(url, 'POST', '/api/spool/flush', { token: TOKEN, body: { id: 'zz' } })
  t.equal(missing.status, 404)
  t.same(missing.json, { error: 'unknown message "zz"; known: m1' })
  t.same(
    port.calls.map((c) => [c.op, c.id, c.actor.by]),
    [
      ['flush', undefined, 'admin'],
      ['flush', 'm1', 'admin'],
      ['hold', 'm1', 'admin'],
      ['release', 'm1', 'admin'],
      ['bounce', 'm2', 'admin'],
      ['flush', 'zz', 'admin'],
    ],
  )
})

t.test('an unknown backend is 404 naming the known ids, for reads and changes', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const read = await request(url, 'GET', '/api/backends/mx9')
  t.equal(read.status, 404)
  t.same(read.json, { error: 'unknown backend "mx9"; known: mx1, mx2, mx3' })
  const change = await request(url, 'POST', '/api/backends/mx9/eject', { body: { reason: 'why not' } })
  t.equal(change.status, 404)
  t.same(change.json, { error: 'unknown backend "mx9"; known: mx1, mx2, mx3' })
  t.equal(port.backendsById.has('mx9'), false)
})

t.test('bad requests are 400 with a message that names the problem', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const cases: [string, string | object, string][] = [
    ['/api/backends/mx1/eject', {}, 'reason is required: say why you eject mx1'],
    ['/api/backends/mx1/eject', { reason: '   ' }, 'reason is required: say why you eject mx1'],
    ['/api/backends/mx1/eject', { reason: 42 }, 'reason must be a string, got number: say why you eject mx1'],
    [
      '/api/backends/mx1/eject',
      { reason: 'r', for: 'soon' },
      'for must be a duration with a unit ("90s", "30m", "2h", "1d") or a number of milliseconds; got "soon"',
    ],
    [
      '/api/backends/mx1/eject',
      { reason: 'r', for: '30' },
      'for must be a duration with a unit ("90s", "30m", "2h", "1d") or a number of milliseconds; got "30"',
    ],
    [
      '/api/backends/mx1/eject',
      { reason: 'r', for: -5 },
      'for must be a duration with a unit ("90s", "30m", "2h", "1d") or a number of milliseconds; got -5',
    ],
    [
      '/api/backends/mx1/eject',
      { reason: 'r', for: '400d' },
      'for is longer than 366d (got "400d"); leave it out to eject until restored',
    ],
    [
      '/api/backends/mx1/eject',
      { reason: 'r', duration: '30m' },
      'unknown field "duration" in the eject request; accepted: reason, for',
    ],
    ['/api/backends/mx1/eject', '[1]', 'request body must be a JSON object, got an array'],
    ['/api/spool/flush', { id: 7 }, 'id must be a message id (a non-empty string), got 7; leave it out to flush all'],
  ]
  for (const [path, body, error] of cases) {
    const res = await request(url, 'POST', path, { body })
    t.equal(res.status, 400, `${path} ${JSON.stringify(body)}`)
    t.same(res.json, { error })
  }
  const broken = await request(url, 'POST', '/api/backends/mx1/eject', { body: '{"reason": "x",' })
  t.equal(broken.status, 400)
  t.match((broken.json as { error: string }).error, /^request body is not valid JSON \(.+\); send a JSON object/)
  const badEncoding = await request(url, 'GET', '/api/backends/%E0%A4%A')
  t.equal(badEncoding.status, 400)
  t.same(badEncoding.json, { error: 'the path segment "%E0%A4%A" is not valid percent-encoding' })
  t.same(port.calls, [], 'no bad request reached the port')
})

t.test('unknown routes are 404, wrong methods 405 with Allow', async (t) => {
  const { url } = await startTestAdmin(t)
  const nothing = await request(url, 'GET', '/api/nothing')
  t.equal(nothing.status, 404)
  t.same(nothing.json, { error: 'no such endpoint: GET /api/nothing; see docs/admin-api.md for the API' })
  const wrong = await request(url, 'DELETE', '/api/backends/mx1')
  t.equal(wrong.status, 405)
  t.equal(wrong.headers.allow, 'GET, HEAD')
  t.same(wrong.json, { error: 'DELETE is not allowed on /api/backends/mx1; allowed: GET, HEAD' })
  const getChange = await request(url, 'GET', '/api/backends/mx1/eject')
  t.equal(getChange.status, 405)
  t.same(getChange.json, { error: 'GET is not allowed on /api/backends/mx1/eject; allowed: POST' })
})

t.test('a body over 64 KB is 413 and nothing changes', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const big = JSON.stringify({ reason: 'x'.repeat(MAX_BODY_BYTES) })
  const res = await request(url, 'POST', '/api/backends/mx1/eject', { body: big })
  t.equal(res.status, 413)
  t.same(res.json, { error: 'request body is over 64 KB; admin requests are small JSON objects' })
  t.same(port.calls, [])
  const justUnder = JSON.stringify({ reason: 'x'.repeat(400) })
  t.equal((await request(url, 'POST', '/api/backends/mx1/eject', { body: justUnder })).status, 200)
})

t.test('an unexpected error is 500 with an error id, logged, and no stack trace in the response', async (t) => {
  const { url, port, lines } = await startTestAdmin(t)
  port.failNext = new Error('redis exploded at /srv/secret/path.ts:12')
  const res = await request(url, 'POST', '/api/backends/mx1/drain', {})
  t.equal(res.status, 500)
  const error = (res.json as { error: string }).error
  t.match(error, /^internal error on node node-a \(error id [0-9a-f]{8}\); the node log has the details$/)
  t.notMatch(res.text, /secret|at \//)
  const logged = lines.find((l) => l.msg === 'admin request failed')
  t.ok(logged, 'the error is in the node log')
  t.equal(error.includes(String(logged?.errorId)), true, 'the response names the logged error id')
})

t.test('a change the node does not finish in time is 504, and says it may still apply', async (t) => {
  const port = new MemoryAdminPort()
  let release: () => void = () => {}
  port.stall = new Promise<void>((r) => {
    release = r
  })
  t.teardown(() => release())
  const { url } = await startTestAdmin(t, { port, changeTimeoutMs: 200 })
  const res = await request(url, 'POST', '/api/backends/mx1/eject', { body: { reason: 'r' } })
  t.equal(res.status, 504)
  t.same(res.json, {
    error: 'the node did not finish "eject mx1" within 200 ms; it may still take effect: check mxgate status',
  })
})

t.test('listening on a taken port fails with a message naming the address', async (t) => {
  const { server } = await startTestAdmin(t)
  const { log } = logSink()
  await t.rejects(
    startAdminServer({
      listen: { host: '127.0.0.1', port: server.address.port },
      tokens: parseTokens(null),
      port: new MemoryAdminPort(),
      log,
    }),
    {
      code: 'EADMINLISTEN',
      message: `the admin API cannot listen on 127.0.0.1:${server.address.port}: EADDRINUSE; free the port or set admin.listen (MXGATE_ADMIN_LISTEN)`,
    },
  )
})

t.test('reload: token required, the reply says what changed; a broken file is 422 naming it', async (t) => {
  const port = new MemoryAdminPort()
  const { url, lines } = await startTestAdmin(t, { port })
  t.equal((await request(url, 'POST', '/api/reload', { token: null })).status, 401, 'no token, no reload')
  t.same(port.calls, [])
  const ok = await request(url, 'POST', '/api/reload', { body: { reason: 'add mx4' } })
  t.equal(ok.status, 200)
  t.match(ok.json, { added: ['mx4'], removed: ['mx3'], needsRestart: [{ key: 'smtp.listen' }] })
  t.match(lines.at(-1), { what: 'reload', why: 'add mx4', configVersion: 'fed654cba321' })
  port.reloadResult = new ReloadRefusedError('configuration not reloaded, nothing changed: /x/mxgate.ini:3: k: bad')
  const bad = await request(url, 'POST', '/api/reload')
  t.equal(bad.status, 422)
  t.same(bad.json, { error: 'configuration not reloaded, nothing changed: /x/mxgate.ini:3: k: bad' })
  t.equal((await request(url, 'POST', '/api/reload', { body: { force: true } })).status, 400, 'unknown fields refused')
})

t.test('GET /api/backends carries this node config version and the nodes sharing its store', async (t) => {
  const port = new MemoryAdminPort()
  port.nodeList = [{ node: 'node-a', configVersion: 'abc123def456', at: T0 }]
  const { url } = await startTestAdmin(t, { port })
  t.match((await request(url, 'GET', '/api/backends')).json, {
    node: 'node-a',
    configVersion: 'abc123def456',
    nodes: [{ node: 'node-a', configVersion: 'abc123def456' }],
  })
})
