// The operator's view of a real node: status, eject/restore through the CLI, /metrics, /readyz.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { runMxgate, startMxgate, waitForLogs } from './helpers/mxgate-process'
import { parseMetrics } from './helpers/prom'

async function backend(t: Test, id: string): Promise<FakeBackend> {
  const b = new FakeBackend({ id })
  await b.start()
  t.teardown(() => b.stop())
  return b
}

t.test('operators eject, watch and restore a backend on a running node', async (t) => {
  const mx1 = await backend(t, 'mx1')
  const mx2 = await backend(t, 'mx2')
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port},mx2=127.0.0.1:${mx2.port}`,
    env: { MXGATE_ADMIN_TOKEN: 'ops:s3cret' },
  })
  t.teardown(() => node.stop())
  const admin = ['--admin', `http://127.0.0.1:${node.adminPort}`]
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runMxgate([...args, ...admin], { MXGATE_ADMIN_TOKEN: '', NO_COLOR: '1', ...env })

  const st = await cli(['status', '--json'])
  t.equal(st.code, 0, st.stderr)
  const view = JSON.parse(st.stdout) as { backends: { id: string; state: string }[] }
  t.same(
    view.backends.map((b) => [b.id, b.state]),
    [
      ['mx1', 'admitted'],
      ['mx2', 'admitted'],
    ],
  )

  const refused = await cli(['eject', 'mx1', '--reason', 'disk swap'])
  t.equal(refused.code, 1, 'no token: refused')
  t.match(refused.stderr, /401|token/i)
  const wrong = await cli(['eject', 'mx1', '--reason', 'disk swap', '--token', 'nope'])
  t.equal(wrong.code, 1, 'wrong token: refused')

  const ok = await cli(['eject', 'mx1', '--reason', 'disk swap', '--token', 's3cret'])
  t.equal(ok.code, 0, ok.stderr)
  const unknown = await cli(['eject', 'mx9', '--reason', 'x', '--token', 's3cret'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown backend "mx9"; known: mx1, mx2/)

  for (let i = 0; i < 6; i++) {
    const r = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 's@remote.test',
      to: ['u@example.com'],
      message: makeTestMessage(),
    })
    t.equal(r.ok, true)
  }
  t.equal(mx1.received.length, 0, 'the ejected backend gets nothing')
  t.equal(mx2.received.length, 6)

  const table = await cli(['status'])
  t.match(table.stdout, /mx1\s+manual-ejected\s+disk swap/)
  // Log lines come over the node's stdout pipe, not the HTTP reply: wait for them rather than assume they are in.
  const isAudit = (l: Record<string, unknown>) =>
    l.audit === true && l.who === 'ops' && String(l.what ?? '').includes('eject')
  await waitForLogs(node, (logs) => logs.some(isAudit), 'the audit line of the eject')
  await waitForLogs(
    node,
    (logs) => logs.some((l) => l.audit === true && l.who === 'anonymous@127.0.0.1'),
    'the audit line of a refused eject',
  )
  const audit = node.logs.find(isAudit)
  t.ok(audit, 'the change is audited')
  t.match(audit, { who: 'ops', why: 'disk swap' })
  t.ok(
    node.logs.some((l) => l.audit === true && l.who === 'anonymous@127.0.0.1'),
    'refused attempts are audited too',
  )

  const metrics = parseMetrics(await fetch(`http://127.0.0.1:${node.adminPort}/metrics`).then((r) => r.text()))
  t.equal(metrics.value('mxgate_backend_state', { backend: 'mx1', state: 'manual-ejected' }), 1)
  t.equal(metrics.value('mxgate_messages_total', { outcome: 'relayed' }), 6)
  t.same(metrics.by('mxgate_backend_attempts_total', 'stage', { backend: 'mx2', verdict: 'delivered' }), { dot: 6 })
  const ready = await fetch(`http://127.0.0.1:${node.adminPort}/readyz`)
  t.equal(ready.status, 200)

  const restored = await cli(['restore', 'mx1', '--token', 's3cret'])
  t.equal(restored.code, 0, restored.stderr)
  const after = JSON.parse((await cli(['status', '--json'])).stdout) as { backends: { id: string; state: string }[] }
  t.equal(after.backends.find((b) => b.id === 'mx1')?.state, 'probation', 'restored backends ramp up')
})

t.test('with worker processes and no Redis, an eject reaches every worker through the master', async (t) => {
  const mx1 = await backend(t, 'mx1')
  const mx2 = await backend(t, 'mx2')
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port},mx2=127.0.0.1:${mx2.port}`,
    env: { MXGATE_WORKERS: '2', MXGATE_ADMIN_TOKEN: 'ops:s3cret' },
  })
  t.teardown(() => node.stop())
  const r = await runMxgate(['eject', 'mx1', '--reason', 'test', '--admin', `http://127.0.0.1:${node.adminPort}`], {
    MXGATE_ADMIN_TOKEN: 's3cret',
  })
  t.equal(r.code, 0, r.stderr)
  // The eject lands on one worker and reaches the other through the master; each logs it when it takes effect.
  const workersEjecting = (logs: Record<string, unknown>[]) =>
    new Set(logs.filter((l) => l.backend === 'mx1' && l.to === 'manual-ejected').map((l) => l.pid))
  await waitForLogs(node, (logs) => workersEjecting(logs).size === 2, 'both workers take mx1 out')
  // Connections are spread over both workers; none of them may pick mx1 any more.
  for (let i = 0; i < 12; i++) {
    const s = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 's@remote.test',
      to: ['u@example.com'],
      message: makeTestMessage(),
    })
    t.equal(s.ok, true, s.reply)
  }
  t.equal(mx1.received.length, 0, 'no worker sends to the ejected backend')
  t.equal(mx2.received.length, 12)
  const pids = new Set(node.logs.filter((l) => l.msg === 'relayed').map((l) => l.pid))
  t.ok(pids.size >= 2, `messages were handled by ${pids.size} worker processes`)
})
