// The spool as operators and backends meet it, through real mxgate processes: the `mxgate spool` commands,
// per-recipient progress across retries, and two nodes sharing one spool directory.
import t from 'tap'
import type { FaultRule } from '../src/testing/fake-backend'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { runMxgate } from './helpers/mxgate-process'
import {
  api,
  backend,
  configDir,
  deliveriesPerRecipient,
  eventually,
  type Node,
  parseDsn,
  receipts,
  runnerCounts,
  runnerLookedAgain,
  type SpoolItem,
  send,
  spoolFiles,
  spoolList,
  startNode,
  tempDir,
} from './helpers/spool-e2e'

const REFUSE: FaultRule[] = [{ stage: 'connect', action: 'refuse' }]

/** The mxgate command as an operator on the node's machine runs it: the token comes from the node's token file. */
async function cli(node: Node, ...args: string[]) {
  return runMxgate(
    [...args, '--admin', node.adminUrl, '--token-file', node.tokenFile],
    { MXGATE_ADMIN_TOKEN: '' },
    20_000,
  )
}

async function admitted(node: Node, backendId: string): Promise<boolean> {
  const r = await api<{ state: string }>(node, 'GET', `/api/backends/${backendId}`)
  return r.body.state === 'admitted' || r.body.state === 'probation'
}

t.test('operators list, show, hold, release, flush and bounce spooled mail with the mxgate command', async (t) => {
  const mx = await backend(t, { id: 'mx1', faults: REFUSE })
  const smarthost = await backend(t, { id: 'smarthost' })
  // Retries an hour apart: in this test only the operator's commands make anything happen. The recipient checks at
  // RCPT meet the refused connections too; min_volume keeps the breaker from ejecting mx1 on them.
  const ini = `[breaker]\nejection_time = 300ms\nmin_volume = 100\n[spool]\nretry_first = 1h\nretry_max = 2h\nbounce_relay = 127.0.0.1:${smarthost.port}\n`
  const spoolDir = tempDir(t, 'mxgate-spool-ops-')
  const node = await startNode(t, { backends: [mx], config: configDir(t, ini), spoolDir })
  for (const n of [1, 2, 3]) {
    const r = await send(node, [`user${n}@example.com`], makeTestMessage({ messageId: `ops-${n}@test` }))
    t.match(r.reply, /^250 .*queued/, `ops-${n} spooled`)
  }

  const ls = await cli(node, 'spool', 'ls', '--json')
  t.equal(ls.code, 0, ls.stderr)
  const listed = (JSON.parse(ls.stdout) as { messages: SpoolItem[] }).messages
  t.equal(listed.length, 3, 'spool ls --json lists the three messages')
  const idOf = (rcpt: string) => listed.find((m) => m.to[0] === rcpt)!.id
  const [id1, id2, id3] = [idOf('user1@example.com'), idOf('user2@example.com'), idOf('user3@example.com')]

  const show = await cli(node, 'spool', 'show', id1)
  t.equal(show.code, 0, show.stderr)
  t.match(show.stdout, id1, 'spool show names the message')
  t.match(show.stdout, /user1@example\.com/, 'and its recipient')
  t.match(show.stdout, /mx1/, 'and the backend that failed it')

  const bounce = await cli(node, 'spool', 'bounce', id3)
  t.equal(bounce.code, 0, bounce.stderr)
  t.match(bounce.stdout, `bounced ${id3}`)
  t.ok(await eventually(() => smarthost.received.length === 1, 5000), 'spool bounce sends a DSN to the smarthost')
  const dsn = parseDsn(smarthost.received[0]!)
  t.equal(dsn.envelopeFrom, '')
  t.same(dsn.envelopeTo, ['sender@remote.test'])
  t.same(
    dsn.recipients.map((f) => [f['final-recipient'], f.action, f.status]),
    [['rfc822; user3@example.com', 'failed', '5.0.0']],
  )
  t.match(dsn.recipients[0]?.['diagnostic-code'], /returned by an operator/)
  t.notOk(
    (await spoolList(node)).some((m) => m.id === id3),
    'and removes the message',
  )

  const hold = await cli(node, 'spool', 'hold', id1)
  t.equal(hold.code, 0, hold.stderr)
  t.match(hold.stdout, `held ${id1}`)

  await mx.setFaults([])
  t.ok(await eventually(() => admitted(node, 'mx1'), 10_000), 'the backend is back in the pool')
  const beforeFlush = await runnerCounts(node)
  const flush = await cli(node, 'spool', 'flush')
  t.equal(flush.code, 0, flush.stderr)
  t.match(flush.stdout, /1 message scheduled for retry now/, 'flush schedules every message that is not held')
  t.ok(await eventually(() => mx.received.length === 1, 10_000), 'the flushed message is delivered at once')
  t.equal(mx.received[0]?.messageId, 'ops-2@test')
  const afterFlush = await runnerLookedAgain(node)
  t.equal(afterFlush.pickups - beforeFlush.pickups, 1, 'the runner looked again and picked up only the flushed one')
  t.equal(mx.received.length, 1, 'the held message is not retried')
  const left = await spoolList(node)
  t.same(
    left.map((m) => [m.id, m.held]),
    [[id1, true]],
    'only the held message is left',
  )

  const release = await cli(node, 'spool', 'release', id1)
  t.equal(release.code, 0, release.stderr)
  t.match(release.stdout, `released ${id1}`)
  t.ok(await eventually(() => mx.received.length === 2, 10_000), 'spool release retries it now')
  t.equal(mx.received[1]?.messageId, 'ops-1@test')
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 5000), 'the spool is empty')
  t.equal(smarthost.received.length, 1, 'one DSN in all')

  const gone = await cli(node, 'spool', 'show', id2)
  t.equal(gone.code, 2, 'a delivered message is no longer known to spool show (exit 2)')
})

t.test('each recipient is delivered once across retries; a 5.1.1 recipient gets a DSN', async (t) => {
  const mx = await backend(t, {
    id: 'mx1',
    faults: [
      { stage: 'rcpt', action: 'reply', rcpt: 'nobody@', reply: '550 5.1.1 no such user' },
      { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 try again later' },
    ],
  })
  const smarthost = await backend(t, { id: 'smarthost' })
  const ini = `[breaker]\nejection_time = 300ms\nmin_volume = 100\n[spool]\nretry_first = 300ms\nretry_max = 500ms\nbounce_relay = 127.0.0.1:${smarthost.port}\n`
  const spoolDir = tempDir(t, 'mxgate-spool-rcpt-')
  // Without recipient verification: this is the path of mail taken unchecked (verification off, a domain that opts
  // out, a check no backend answered in time), where a recipient found unknown on a retry is owed a DSN. With
  // verification nobody@ would be refused at RCPT (test/verify-e2e.test.ts).
  const env = { MXGATE_VERIFY: 'off' }
  const node = await startNode(t, { backends: [mx], config: configDir(t, ini), spoolDir, env })
  let refusedB = 0
  mx.on('fault', (f) => {
    if (f.rcpt === 'b@example.com') refusedB++
  })
  const to = ['a@example.com', 'b@example.com', 'nobody@example.com']
  const r = await send(node, to, makeTestMessage({ messageId: 'rcpt@test' }))
  t.match(r.reply, /^250 .*queued/, 'no recipient taken: spooled')

  // Now the backend takes a@ but keeps refusing b@ for now.
  await mx.setFaults([
    { stage: 'rcpt', action: 'reply', rcpt: 'nobody@', reply: '550 5.1.1 no such user' },
    { stage: 'rcpt', action: 'reply', rcpt: 'b@', reply: '451 4.3.0 try again later' },
  ])
  t.ok(await eventually(() => mx.received.length === 1, 10_000), 'a retry delivers a@')
  t.same(mx.received[0]?.to, ['a@example.com'])
  const before = refusedB
  t.ok(await eventually(() => refusedB >= before + 2, 10_000), 'b@ is refused on two more retries')
  t.same(
    (await spoolList(node)).map((m) => m.pending),
    [['b@example.com']],
    'only b@ is still pending',
  )

  await mx.setFaults([{ stage: 'rcpt', action: 'reply', rcpt: 'nobody@', reply: '550 5.1.1 no such user' }])
  t.ok(await eventually(() => mx.received.length === 2, 10_000), 'b@ is delivered once the backend takes it')
  t.same(deliveriesPerRecipient([mx], 'rcpt@test'), { 'a@example.com': 1, 'b@example.com': 1 })
  t.ok(await eventually(() => smarthost.received.length === 1, 10_000), 'a DSN for nobody@ reaches the smarthost')
  const dsn = parseDsn(smarthost.received[0]!)
  t.same(
    dsn.recipients.map((f) => [f['final-recipient'], f.action, f.status]),
    [['rfc822; nobody@example.com', 'failed', '5.1.1']],
    'the DSN names only the refused recipient, with the backend’s status',
  )
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 5000), 'the message left the spool')
  // The DSN goes out before the message is removed; a round after that finds nothing left to bounce.
  const counts = await runnerLookedAgain(node)
  t.equal(counts.bounced, 1, 'the runner sent one DSN')
  t.equal(smarthost.received.length, 1, 'exactly one DSN')
})

t.test('two nodes on one spool directory never deliver a message twice because of the sharing', async (t) => {
  const mx = await backend(t, { id: 'mx1', faults: [{ stage: 'rcpt', action: 'reply', reply: '451 4.3.0 later' }] })
  const ini = '[breaker]\nejection_time = 300ms\nmin_volume = 1000\n[spool]\nretry_first = 300ms\nretry_max = 400ms\n'
  const config = configDir(t, ini)
  const spoolDir = tempDir(t, 'mxgate-spool-shared-')
  const env = { MXGATE_WORKERS: '0' }
  const a = await startNode(t, { backends: [mx], config, spoolDir, env })
  let b = await startNode(t, { backends: [mx], config, spoolDir, env })
  const ids = Array.from({ length: 20 }, (_, i) => `shared-${i}@test`)
  for (const [i, id] of ids.entries()) {
    const r = await send(i % 2 === 0 ? a : b, ['x@example.com', 'y@example.com'], makeTestMessage({ messageId: id }))
    t.equal(r.ok, true, `${id} spooled: ${r.reply}`)
  }
  // A node that (re)starts on a shared directory picks up everything in it, the other node's mail too.
  await b.proc.stop()
  b = await startNode(t, { backends: [mx], config, spoolDir, env })
  t.equal((await spoolList(b)).length, 20, 'the restarted node sees all 20 messages')

  // Both nodes now retry the same messages while the backend takes x@ and still refuses y@, then takes both.
  await mx.setFaults([{ stage: 'rcpt', action: 'reply', rcpt: 'y@', reply: '451 4.3.0 later' }])
  t.ok(
    await eventually(() => ids.every((id) => (deliveriesPerRecipient([mx], id)['x@example.com'] ?? 0) >= 1), 20_000),
    'x@ got every message',
  )
  // Make both nodes go over every shared message again at the same moment (y@ still refused), so that they contend
  // for the same files. Left to their schedules they need not: the node whose deliveries end first runs its next
  // round at once and takes each message as it falls due, and the other, ticking once a second, may find none due.
  const [fromA, fromB] = await Promise.all([runnerCounts(a), runnerCounts(b)])
  const flushed = await Promise.all([a, b].map((n) => api<{ scheduled: number }>(n, 'POST', '/api/spool/flush', {})))
  t.same(
    flushed.map((r) => r.status),
    [200, 200],
    'both nodes were told to try every message now',
  )
  t.ok(
    await eventually(
      async () =>
        (await runnerCounts(a)).pickups >= fromA.pickups + ids.length &&
        (await runnerCounts(b)).pickups >= fromB.pickups + ids.length,
      20_000,
    ),
    'both nodes picked up the shared messages again',
  )
  await mx.setFaults([])
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 20_000), 'the spool drains')
  // Whatever either node still had in hand when the directory emptied has finished now.
  await Promise.all([runnerLookedAgain(a), runnerLookedAgain(b)])
  const twice = ids.flatMap((id) =>
    Object.entries(deliveriesPerRecipient([mx], id))
      .filter(([, n]) => n !== 1)
      .map(([rcpt, n]) => `${id} → ${rcpt} ×${n}`),
  )
  t.same(twice, [], 'every recipient got every message exactly once')
  t.equal(receipts([mx]).size, 20)
})
