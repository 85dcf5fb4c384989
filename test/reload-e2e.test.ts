// Reload through real mxgate processes under bounded load: `POST /api/reload` (the `mxgate reload` command) and
// SIGHUP add a backend (probation first, then its share), remove one (its messages in flight finish, none lost),
// refuse a broken file (the old settings stay), report what needs a restart, and reach every worker process.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import type { ReloadView } from '../src/admin/types'
import type { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, type SendResult } from '../src/testing/smtp-sender'
import { runMxgate, waitForLogs } from './helpers/mxgate-process'
import { SmtpSession } from './helpers/smtp-session'
import { api, backend, eventually, type Node, send, startNode, tempDir } from './helpers/spool-e2e'

/** Probation as the test wants it: a small share until 5 good messages, then a short ramp. */
const PROBATION = '[breaker]\nprobation_share = 0.05\nprobation_messages = 5\nslow_start = 1s\n'
/** A backend that answers the final dot this late keeps messages in flight while the test reloads. */
const SLOW_ACCEPT_MS = 1500

function pool(backends: FakeBackend[]): string {
  return backends.map((b) => `[backend.${b.id}]\naddress = 127.0.0.1:${b.port}\n`).join('')
}

/** A config dir whose mxgate.ini the test rewrites before each reload. */
function configFile(t: Test, ini: string): { dir: string; write(ini: string): void } {
  const dir = tempDir(t, 'mxgate-reload-cfg-')
  const file = path.join(dir, 'mxgate.ini')
  writeFileSync(file, ini)
  return { dir, write: (text) => writeFileSync(file, text) }
}

async function node(t: Test, dir: string, env: Record<string, string> = {}): Promise<Node> {
  // backends: [] leaves MXGATE_BACKENDS empty, so the pool comes from the file and a reload may change it.
  return startNode(t, { backends: [], config: dir, spoolDir: tempDir(t, 'mxgate-reload-spool-'), env })
}

interface Load {
  results: SendResult[]
  sent: string[]
  /** When each message's dialogue began (epoch ms), by Message-ID. */
  startedAt: Map<string, number>
}

/** Sends up to `max` messages, `concurrency` at a time, until `stop()` holds; bounded either way. */
async function load(n: Node, prefix: string, max: number, concurrency: number, stop = () => false): Promise<Load> {
  const out: Load = { results: [], sent: [], startedAt: new Map() }
  let next = 0
  const worker = async () => {
    while (next < max && !stop()) {
      const id = `${prefix}-${next++}@reload.test`
      out.sent.push(id)
      out.startedAt.set(id, Date.now())
      out.results.push(await send(n, ['user@example.com'], makeTestMessage({ messageId: id })))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return out
}

function delivered(backends: FakeBackend[], ids: string[]): Map<string, string[]> {
  const by = new Map<string, string[]>(ids.map((id) => [id, []]))
  for (const b of backends) for (const m of b.received) if (m.messageId) by.get(m.messageId)?.push(b.id ?? '')
  return by
}

function countFrom(b: FakeBackend, ids: Set<string>): number {
  return b.received.filter((m) => m.messageId !== null && ids.has(m.messageId)).length
}

async function reload(n: Node): Promise<{ status: number; body: ReloadView & { error?: string } }> {
  return api<ReloadView & { error?: string }>(n, 'POST', '/api/reload', { reason: 'test' })
}

async function state(n: Node, id: string): Promise<string> {
  const r = await api<{ state?: string }>(n, 'GET', `/api/backends/${id}`)
  return r.status === 404 ? 'gone' : (r.body.state ?? `status ${r.status}`)
}

t.test('a reload under load adds a backend: probation traffic only, then its share; nothing lost', async (t) => {
  const [mx1, mx2, mx3] = [
    await backend(t, { id: 'mx1' }),
    await backend(t, { id: 'mx2' }),
    await backend(t, { id: 'mx3' }),
  ]
  const cfg = configFile(t, PROBATION + pool([mx1, mx2]))
  const n = await node(t, cfg.dir)
  // The reload lands in the middle of a bounded load.
  const warming = load(n, 'warm', 60, 4)
  t.ok(await eventually(() => mx1.received.length + mx2.received.length >= 20, 15_000), 'mail is flowing')
  cfg.write(PROBATION + pool([mx1, mx2, mx3]))
  const reloadAt = Date.now()
  const r = await reload(n)
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.same(r.body.added, ['mx3'])
  t.not(r.body.configVersion, r.body.previousVersion, 'the config version changed')
  t.equal(await state(n, 'mx3'), 'probation', 'the new backend starts in probation')
  const warm = await warming

  // Probation: until mx3 has carried its 5 good messages it gets probation_share (5%) of its weight. Every message
  // begun since the reload counts (mx3 did not exist before it).
  const probation = await load(n, 'probation', 1500, 4, () => mx3.received.length >= 5)
  const since = [...warm.startedAt, ...probation.startedAt].filter(([, at]) => at >= reloadAt).length
  const share = mx3.received.length / since
  t.ok(share < 1 / 6, `in probation mx3 carried ${mx3.received.length} of ${since} (its full share is 33%)`)
  t.ok(await eventually(async () => (await state(n, 'mx3')) === 'admitted', 15_000), 'then mx3 is admitted')

  const full = await load(n, 'full', 150, 4)
  const fullShare = countFrom(mx3, new Set(full.sent)) / full.sent.length
  t.ok(fullShare > 1 / 6, `admitted, mx3 carries ${(fullShare * 100).toFixed(1)}% (its share: 33%)`)

  const all = [...warm.results, ...probation.results, ...full.results]
  t.ok(
    all.every((x) => x.code === 250),
    'every message was answered 250',
  )
  const by = delivered([mx1, mx2, mx3], [...warm.sent, ...probation.sent, ...full.sent])
  t.same(
    [...by].filter(([, to]) => to.length !== 1),
    [],
    'every message reached exactly one backend',
  )
})

t.test('a reload removes a backend: its messages in flight finish there, none is lost', async (t) => {
  const mx1 = await backend(t, { id: 'mx1' })
  const mx2 = await backend(t, { id: 'mx2', acceptDelayMs: SLOW_ACCEPT_MS })
  const cfg = configFile(t, pool([mx1, mx2]))
  const n = await node(t, cfg.dir)
  const running = load(n, 'remove', 60, 8)
  t.ok(
    await eventually(async () => {
      const b = await api<{ inFlight: number }>(n, 'GET', '/api/backends/mx2')
      return b.body.inFlight > 0
    }, 10_000),
    'mx2 has messages in flight',
  )
  cfg.write(pool([mx1]))
  const r = await reload(n)
  const atReload = mx2.received.length
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.same(r.body.removed, ['mx2'])
  cfg.write(pool([mx1, mx2]))
  const back = await reload(n)
  t.equal(back.status, 422, 'listing mx2 again while its messages finish is refused')
  t.match(back.body.error, /mx2 is still finishing/)
  cfg.write(pool([mx1]))
  const done = await running
  t.ok(
    done.results.every((x) => x.code === 250),
    'every message was answered 250',
  )
  t.ok(mx2.received.length > atReload, 'mx2 finished the messages it had in flight at the reload')
  const by = delivered([mx1, mx2], done.sent)
  t.same(
    [...by].filter(([, to]) => to.length !== 1),
    [],
    'every message reached exactly one backend',
  )
  t.ok(await eventually(async () => (await state(n, 'mx2')) === 'gone', 10_000), 'then mx2 is gone from the API')
  const metrics = await api<string>(n, 'GET', '/metrics')
  t.notMatch(metrics.body, /backend="mx2"/, 'and from the metrics')
  const after = mx2.received.length
  await load(n, 'after', 10, 2)
  t.equal(mx2.received.length, after, 'no new message goes to mx2')
})

t.test('a broken file changes nothing; the error names the file, the key and the fix', async (t) => {
  const [mx1, mx2] = [await backend(t, { id: 'mx1' }), await backend(t, { id: 'mx2' })]
  const cfg = configFile(t, pool([mx1, mx2]))
  const n = await node(t, cfg.dir)
  const before = await api<{ configVersion: string }>(n, 'GET', '/api/backends')
  cfg.write(`${pool([mx1])}[backend.mx9]\naddress = not-an-address\n`)
  const r = await reload(n)
  t.equal(r.status, 422)
  t.match(r.body.error, /nothing changed.*mxgate\.ini.*backend\.mx9\.address.*host:port/)
  const cli = await runMxgate([
    'reload',
    '--admin',
    `http://127.0.0.1:${n.proc.adminPort}`,
    '--token-file',
    n.tokenFile,
  ])
  t.equal(cli.code, 1, 'mxgate reload exits 1')
  t.match(cli.stderr, /backend\.mx9\.address/)
  const after = await api<{ configVersion: string; backends: { id: string }[] }>(n, 'GET', '/api/backends')
  t.same(
    after.body.backends.map((b) => b.id),
    ['mx1', 'mx2'],
    'the pool is as it was',
  )
  t.equal(after.body.configVersion, before.body.configVersion, 'so is the config version')
})

t.test('SIGHUP does the same: refuses a broken file, then adds and removes under load', async (t) => {
  const [mx1, mx2, mx3] = [
    await backend(t, { id: 'mx1' }),
    await backend(t, { id: 'mx2' }),
    await backend(t, { id: 'mx3' }),
  ]
  const cfg = configFile(t, PROBATION + pool([mx1, mx2]))
  const n = await node(t, cfg.dir)
  cfg.write(`${pool([mx1, mx2])}[breaker]\nslow_start = soon\n`)
  n.proc.proc.kill('SIGHUP')
  await waitForLogs(n.proc, (l) => l.some((x) => /configuration not reloaded/.test(String(x.msg))), 'a refusal')
  t.match(String(n.proc.logs.find((x) => /not reloaded/.test(String(x.msg)))?.msg), /breaker\.slow_start/)
  t.equal(await state(n, 'mx1'), 'admitted', 'the node runs on')

  const running = load(n, 'hup', 200, 4)
  cfg.write(PROBATION + pool([mx2, mx3]))
  n.proc.proc.kill('SIGHUP')
  await waitForLogs(n.proc, (l) => l.some((x) => x.msg === 'configuration reloaded'), 'the reload')
  const reloaded = n.proc.logs.find((x) => x.msg === 'configuration reloaded')!
  t.same(reloaded.added, ['mx3'])
  t.same(reloaded.removed, ['mx1'])
  const done = await running
  t.ok(
    done.results.every((x) => x.code === 250),
    'every message was answered 250',
  )
  const by = delivered([mx1, mx2, mx3], done.sent)
  t.same(
    [...by].filter(([, to]) => to.length !== 1),
    [],
    'every message reached exactly one backend',
  )
  t.ok(await eventually(async () => (await state(n, 'mx1')) === 'gone', 10_000), 'mx1 is gone')
})

t.test(
  'what cannot change live is reported; a pool from MXGATE_BACKENDS stays, and the reply says where to put it',
  async (t) => {
    const [mx1, mx2] = [await backend(t, { id: 'mx1' }), await backend(t, { id: 'mx2' })]
    const cfg = configFile(t, pool([mx1]))
    const n = await startNode(t, {
      backends: [mx1],
      config: cfg.dir,
      spoolDir: tempDir(t, 'mxgate-reload-spool-'),
    })
    const secret = 'reload-test-secret-0123456789'
    cfg.write(`${pool([mx1, mx2])}[smtp]\nmax_recipients = 100\n[breaker]\nwindow = 20s\n[admin]\ntoken = ${secret}\n`)
    const r = await reload(n)
    t.equal(r.status, 200, JSON.stringify(r.body))
    t.same(r.body.added, [], 'no backend added')
    t.match(r.body.notes.join('\n'), /MXGATE_BACKENDS.*\[backend\.ID\] sections in .*mxgate\.ini/)
    t.same(r.body.changed, ['smtp.maxRecipients'])
    t.same(r.body.needsRestart, [
      { key: 'breaker.windowMs', running: 10_000, file: 20_000 },
      { key: 'admin.token', running: null, file: '***' },
    ])
    t.notMatch(JSON.stringify(r.body), secret, 'a secret is never shown')
    t.notMatch(JSON.stringify(n.proc.logs), secret, 'nor logged')
    const rcpts = Array.from({ length: 101 }, (_, i) => `u${i}@example.com`)
    const many = await send(n, rcpts, makeTestMessage())
    t.match(many.rcptReplies[100]?.reply ?? '', /^452 /, 'the new recipient limit applies at once')
  },
)

t.test('in worker mode a reload reaches every worker', async (t) => {
  const [mx1, mx2] = [await backend(t, { id: 'mx1' }), await backend(t, { id: 'mx2' })]
  const cfg = configFile(t, pool([mx1]))
  const n = await node(t, cfg.dir, { MXGATE_WORKERS: '2' })
  const opened = () => new Set(n.proc.logs.filter((x) => x.msg === 'spool opened').map((x) => x.pid)).size
  await waitForLogs(n.proc, () => opened() === 2, 'both workers up')
  cfg.write(pool([mx1, mx2]))
  const r = await reload(n)
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.same(r.body.added, ['mx2'])
  const pids = () =>
    new Set(n.proc.logs.filter((x) => x.msg === 'configuration reloaded' && x.by === 'SIGHUP').map((x) => x.pid))
  await waitForLogs(n.proc, () => pids().size >= 1, 'the other worker reloading')
  const answered = n.proc.logs.filter((x) => x.msg === 'configuration reloaded').map((x) => x.pid)
  t.equal(new Set(answered).size, 2, 'both workers reloaded, each in its own process')

  // SIGHUP to the master (what systemctl reload does) reaches both workers.
  cfg.write(pool([mx2]))
  n.proc.proc.kill('SIGHUP')
  const removedBy = () =>
    new Set(
      n.proc.logs
        .filter((x) => x.msg === 'configuration reloaded' && JSON.stringify(x.removed) === '["mx1"]')
        .map((x) => x.pid),
    )
  await waitForLogs(n.proc, () => removedBy().size === 2, 'both workers reloading on the master SIGHUP')
  t.same([...removedBy()].sort(), [...new Set(answered)].sort(), 'the same two worker processes')
})

t.test('a reload changes the PROXY hosts in place: the next connection meets the new list', async (t) => {
  const mx1 = await backend(t, { id: 'mx1' })
  const cfg = configFile(t, pool([mx1]))
  const n = await node(t, cfg.dir)
  const header = 'PROXY TCP4 192.0.2.50 127.0.0.1 40000 25\r\n'
  const fromBalancer = async () => {
    const { session, banner } = await SmtpSession.open(n.port, { preamble: header, from: '127.0.0.2' })
    const next = banner.startsWith('220') ? await session.command('EHLO proxy.reload.test') : banner
    session.end()
    return next
  }
  t.match(await fromBalancer(), /^421 PROXY not allowed from 127\.0\.0\.2/, 'not a PROXY host yet')
  cfg.write(`${pool([mx1])}[smtp]\nproxy_hosts = 127.0.0.2/32\n`)
  const r = await reload(n)
  t.equal(r.status, 200)
  t.same(r.body.changed, ['smtp.proxyHosts'], 'changed in place')
  t.same(r.body.needsRestart, [], 'no restart needed')
  t.match(await fromBalancer(), /^250[- ]/, 'its PROXY header is honoured from the next connection')
})
