// The spool through a real mxgate process: lifetime expiry (hold, or a DSN through the smarthost), the spool's
// limits (451 4.3.4 and /readyz), and a spool disk that really fills up (a tiny tmpfs).
import t from 'tap'
import { makeTestMessage } from '../src/testing/smtp-sender'
import {
  api,
  backend,
  configDir,
  eventually,
  parseDsn,
  runnerCounts,
  runnerLookedAgain,
  send,
  spoolFiles,
  spoolList,
  startNode,
  tempDir,
} from './helpers/spool-e2e'
import { tinyDisk } from './helpers/tiny-disk'
import { openStore } from './spool-helpers'

const REFUSE = [{ stage: 'connect' as const, action: 'refuse' as const }]
// Short timings so a test sees several retries and an ejected backend return within seconds.
const ini = (spool = '') =>
  `[breaker]\nejection_time = 300ms\n[spool]\nretry_first = 300ms\nretry_max = 600ms\n${spool}`

t.test('a message that outlives spool.lifetime is held for an operator by default', async (t) => {
  const mx = await backend(t, { id: 'mx1', faults: REFUSE })
  const spoolDir = tempDir(t, 'mxgate-spool-e2e-')
  const node = await startNode(t, { backends: [mx], config: configDir(t, ini('lifetime = 1s\n')), spoolDir })
  const r = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'expire-hold@test' }))
  t.match(r.reply, /^250 2\.0\.0 .*queued/)
  t.ok(
    await eventually(async () => (await spoolList(node)).some((m) => m.held), 10_000),
    'the message is held once its lifetime is over',
  )
  const [held] = await spoolList(node)
  t.same(held?.pending, ['user@example.com'], 'its recipient is still pending: nothing was given up')
  // The line comes over the node's stdout pipe, not the admin API: wait for it rather than assume it is in.
  t.ok(
    await eventually(() => node.proc.logs.some((l) => l.msg === 'spooled message expired; held for an operator'), 5000),
    'the expiry is logged',
  )
  // Held means no more attempts, even with the backend back. It was due when it expired, so only the hold keeps
  // the runner from trying it again in the rounds it runs from now on.
  await mx.setFaults([])
  const attempts = held?.attempts
  t.ok((held?.nextAttemptAt ?? Number.POSITIVE_INFINITY) <= Date.now(), 'without the hold it would be due now')
  const before = await runnerCounts(node)
  const after = await runnerLookedAgain(node)
  t.equal(after.pickups, before.pickups, 'the runner looked at the spool again and picked nothing up')
  t.equal(mx.received.length, 0, 'a held message is not delivered')
  t.equal((await spoolList(node))[0]?.attempts, attempts, 'and not retried')
})

t.test('with on_expiry = bounce an expired message gets an RFC 3464 DSN through the smarthost', async (t) => {
  const mx = await backend(t, { id: 'mx1', faults: REFUSE })
  const smarthost = await backend(t, { id: 'smarthost' })
  const spoolDir = tempDir(t, 'mxgate-spool-e2e-')
  const spool = `lifetime = 1s\non_expiry = bounce\nbounce_relay = 127.0.0.1:${smarthost.port}\n`
  const node = await startNode(t, { backends: [mx], config: configDir(t, ini(spool)), spoolDir })
  const r = await send(node, ['user@example.com', 'other@example.com'], makeTestMessage({ messageId: 'exp@test' }))
  t.match(r.reply, /^250 /)
  t.ok(await eventually(() => smarthost.received.length === 1, 10_000), 'a DSN reached the smarthost')
  const dsn = parseDsn(smarthost.received[0]!)
  t.equal(dsn.envelopeFrom, '', 'the DSN has the null reverse path, so it can never bounce back')
  t.same(dsn.envelopeTo, ['sender@remote.test'], 'it goes to the original sender')
  t.match(dsn.contentType, /multipart\/report;\s*report-type=delivery-status/)
  t.same(
    dsn.recipients.map((f) => [f['final-recipient'], f.action, f.status]),
    [
      ['rfc822; user@example.com', 'failed', '4.4.7'],
      ['rfc822; other@example.com', 'failed', '4.4.7'],
    ],
    'one failed group per recipient, status 4.4.7 (delivery time expired)',
  )
  t.match(dsn.text, /Subject: Undelivered Mail Returned to Sender/)
  t.match(dsn.text, /Message-ID: <exp@test>/, 'the original headers are attached')
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 5000), 'the message left the spool')
  t.equal(mx.received.length, 0)

  // A message from the null sender (itself a bounce) expires silently: never a DSN to <>.
  const nullSender = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'null@test' }), '')
  t.match(nullSender.reply, /^250 /)
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 10_000), 'the <> message expired and left')
  // A DSN goes out before its message is removed; the counters say what the runner did with both messages.
  const counts = await runnerLookedAgain(node)
  t.equal(counts.expired, 2, 'both messages expired')
  t.equal(counts.bounced, 1, 'one DSN was sent, for the first message')
  t.equal(smarthost.received.length, 1, 'no DSN was sent for the <> message')
})

t.test(
  'over its limits the spool answers 451 4.3.4, /readyz says why, and both recover once mail drains',
  async (t) => {
    const mx = await backend(t, { id: 'mx1', faults: REFUSE })
    const spoolDir = tempDir(t, 'mxgate-spool-e2e-')
    const node = await startNode(t, {
      backends: [mx],
      config: configDir(t, ini('max_messages = 2\n')),
      spoolDir,
    })
    const ready0 = await api<{ ready: boolean }>(node, 'GET', '/readyz')
    t.equal(ready0.status, 200, 'ready while the spool has room')
    for (const id of ['lim-1@test', 'lim-2@test']) {
      const r = await send(node, ['user@example.com'], makeTestMessage({ messageId: id }))
      t.match(r.reply, /^250 .*queued/, `${id} spooled`)
    }
    const over = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'lim-3@test' }))
    t.match(over.reply, /^451 4\.3\.4 /, 'the third message is refused for now: the sender keeps it')
    const full = await api<{ ready: boolean; reasons: string[] }>(node, 'GET', '/readyz')
    t.equal(full.status, 503, 'not ready: the load balancer sends mail elsewhere')
    t.match(full.body.reasons.join('; '), /spool full: 2 messages spooled, limit 2/)

    await mx.setFaults([])
    t.ok(await eventually(() => mx.received.length === 2, 15_000), 'the spool drains once the backend is back')
    t.ok(
      await eventually(async () => (await api(node, 'GET', '/readyz')).status === 200, 5000),
      'ready again once the spool has room',
    )
    const after = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'lim-3@test' }))
    t.match(after.reply, /^250 /, 'and the refused message is taken when the sender retries')
    t.same(mx.received.map((m) => m.messageId).sort(), ['lim-1@test', 'lim-2@test', 'lim-3@test'])
  },
)

t.test('a spool disk that really fills up: 451, no partial files, and mail flows again once it drains', async (t) => {
  const tiny = await tinyDisk(t, '256k')
  if (tiny.path === null) {
    t.plan(0, tiny.why)
    return
  }
  const disk = tiny.path
  t.comment(`a 256 KiB tmpfs ${tiny.how}`)
  const mx = await backend(t, { id: 'mx1', faults: REFUSE })
  // min_free_disk = 0: nothing guards the disk, so the writes themselves meet ENOSPC.
  const node = await startNode(t, {
    backends: [mx],
    config: configDir(t, ini('min_free_disk = 0\nmax_size = 1G\n')),
    spoolDir: disk,
  })
  const replies: string[] = []
  const acked: string[] = []
  // 40 KB messages: the 256 KiB disk holds five or six of them.
  for (let i = 0; i < 12; i++) {
    const id = `full-${i}@test`
    const r = await send(node, ['user@example.com'], makeTestMessage({ messageId: id, size: 40_000 }))
    replies.push(r.reply.slice(0, 9))
    if (r.ok) acked.push(id)
  }
  t.ok(acked.length >= 3, `${acked.length} messages spooled before the disk was full`)
  const refused = replies.filter((r) => r.startsWith('451'))
  t.ok(refused.length >= 1, `the disk filled up: ${replies.join(', ')}`)
  t.ok(
    refused.every((r) => r === '451 4.3.0'),
    'a write that meets ENOSPC is a local error for now (4.3.0), never a 250 and never a 5xx',
  )
  const notReady = await api<{ reasons: string[] }>(node, 'GET', '/readyz')
  t.equal(notReady.status, 503, 'a disk that refuses writes takes the node out of the load balancer')
  t.match(notReady.body.reasons.join('; '), /spool full: a write failed \d+s ago \(ENOSPC\)/)
  const files = spoolFiles(disk)
  t.same(files.tmp, [], 'no temp file is left behind by a failed write')
  t.equal(files.msg.length, acked.length, 'exactly the acknowledged messages are on disk')

  await mx.setFaults([])
  t.ok(
    await eventually(() => mx.received.length >= acked.length, 20_000),
    'the full spool still delivers (claims and removal work on a full disk)',
  )
  t.same(mx.received.map((m) => m.messageId).sort(), [...acked].sort(), 'every acknowledged message, once')

  t.ok(await eventually(() => spoolFiles(disk).msg.length === 0, 5000), 'and the disk is empty again')
  const again = await send(node, ['user@example.com'], makeTestMessage({ messageId: 'after-full@test' }))
  t.match(again.reply, /^250 /, 'new mail is relayed again')
  t.ok(
    await eventually(async () => (await api(node, 'GET', '/readyz')).status === 200, 15_000),
    'and the node is ready again',
  )
  await node.proc.stop()
  const { opened } = await openStore(disk)
  t.equal(opened.quarantined, 0, 'nothing on the disk is corrupt')
})

t.test(
  'min_free_disk keeps a margin on the spool disk: 451 4.3.4 and /readyz 503 before the disk is full',
  async (t) => {
    const tiny = await tinyDisk(t, '512k')
    if (tiny.path === null) {
      t.plan(0, tiny.why)
      return
    }
    const disk = tiny.path
    const mx = await backend(t, { id: 'mx1', faults: REFUSE })
    const node = await startNode(t, {
      backends: [mx],
      config: configDir(t, ini('min_free_disk = 256k\n')),
      spoolDir: disk,
    })
    const replies: string[] = []
    for (let i = 0; i < 10; i++) {
      const r = await send(node, ['user@example.com'], makeTestMessage({ messageId: `margin-${i}@test`, size: 40_000 }))
      replies.push(r.reply.slice(0, 9))
    }
    t.ok(replies.includes('250 2.0.0'), `some messages fit: ${replies.join(', ')}`)
    t.equal(replies.at(-1), '451 4.3.4', 'then the margin is reached: 451 4.3.4, not an ENOSPC')
    t.notOk(replies.includes('451 4.3.0'), 'the disk itself never filled up')
    const ready = await api<{ reasons: string[] }>(node, 'GET', '/readyz')
    t.equal(ready.status, 503)
    t.match(ready.body.reasons.join('; '), /spool full: \d+ bytes free on the spool disk, keeping 262144/)
    await mx.setFaults([])
    t.ok(
      await eventually(async () => (await api(node, 'GET', '/readyz')).status === 200, 15_000),
      'ready again once the spool has drained',
    )
  },
)

t.test(
  'after a SIGKILL, spooled mail is drained at start when a backend is up, not after its retry interval',
  async (t) => {
    const mx1 = await backend(t, { id: 'mx1', faults: REFUSE })
    const mx2 = await backend(t, { id: 'mx2', faults: REFUSE })
    const spoolDir = tempDir(t, 'mxgate-spool-e2e-')
    // Retries an hour apart: only the drain at start can deliver within this test.
    const config = configDir(t, '[spool]\nretry_first = 1h\nretry_max = 2h\ndrain_rate = 20\n')
    const first = await startNode(t, { backends: [mx1, mx2], config, spoolDir })
    const ids = Array.from({ length: 30 }, (_, i) => `restart-${i}@test`)
    for (const id of ids) {
      const r = await send(first, ['user@example.com'], makeTestMessage({ messageId: id }))
      t.match(r.reply, /^250 .*queued/, `${id} spooled`)
    }
    const exited = new Promise((resolve) => first.proc.proc.once('exit', resolve))
    first.proc.proc.kill('SIGKILL')
    await exited

    await mx1.setFaults([])
    const second = await startNode(t, { backends: [mx1, mx2], config, spoolDir })
    t.ok(
      await eventually(() => mx1.received.length >= ids.length, 20_000),
      'all 30 delivered through the backend that is up',
    )
    t.same(mx1.received.map((m) => m.messageId).sort(), [...ids].sort(), 'each once')
    t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 5000), 'the spool is empty')
    t.same(await spoolList(second), [])
  },
)
