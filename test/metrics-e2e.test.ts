// The /metrics page after a scripted run through the real `mxgate start`, read with a real Prometheus text-format
// parser: exact values for every message, attempt and refusal the script caused, and the metric types and names
// dashboards rely on.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { startMxgate } from './helpers/mxgate-process'
import { parseMetrics } from './helpers/prom'
import { SessionClosedError, SmtpSession } from './helpers/smtp-session'

t.test('a scripted run, counted exactly', async (t) => {
  // One backend, so every attempt's backend and stage is known: "nobody" is refused for good at RCPT (a pool of one
  // has nobody to confirm with: recipient verification passes the refusal back before DATA), "later" temporarily
  // with a code that is the backend's fault (verification takes it unverified; the delivery then spools it).
  const mx1 = new FakeBackend({
    id: 'mx1',
    faults: [
      { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'nobody' },
      { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 Try again later', rcpt: 'later' },
    ],
  })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}`, env: { MXGATE_ADMIN_TOKEN: 'ops:m3trics' } })
  t.teardown(() => node.stop())
  const send = (to: string, message = makeTestMessage()) =>
    sendMessage({ host: '127.0.0.1', port: node.port, from: 'a@remote.test', to: [to], message })

  for (let i = 0; i < 3; i++) t.ok((await send('user@example.com')).ok, `message ${i + 1} relayed`)
  t.equal((await send('nobody@example.com')).code, 550, 'the backend’s refusal is passed back at RCPT')
  const laterSentAt = Date.now()
  t.ok((await send('later@example.com')).ok, 'a message no backend takes now is spooled (250)')

  // What is refused before a message reaches the engine: each on a connection of its own.
  const session = async () => {
    const { session } = await SmtpSession.open(node.port)
    await session.command('EHLO refused.metrics.test')
    return session
  }
  const s1 = await session()
  t.match(await s1.command('MAIL FROM:<a@remote.test> SIZE=999999999'), /^55\d/, 'too big for max.bytes')
  t.match(await s1.command('FROB'), /^500/, 'an unknown command')
  t.match(await s1.command('MAIL FROM:<a@remote.test>'), /^250/)
  t.match(await s1.command('RCPT TO:<user@elsewhere.test>'), /^550 5\.7\.1/, 'not our domain')
  s1.end()
  const s2 = await session()
  await s2.command('MAIL FROM:<a@remote.test>')
  await s2.command('RCPT TO:<user@example.com>')
  t.match(await s2.command('DATA'), /^354/)
  const loop = 'Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n'.repeat(101)
  s2.write(`${loop}Subject: loop\r\n\r\nbody\r\n.\r\n`)
  t.match(await s2.next(), /^550 /, 'too many Received headers: a loop')
  s2.end()
  const s3 = await session()
  await s3.command('MAIL FROM:<a@remote.test>')
  await s3.command('RCPT TO:<user@example.com>')
  t.match(await s3.command('DATA'), /^354/)
  s3.write('Subject: bare\r\n\r\na bare\nline feed\r\n.\r\n')
  t.match(await s3.next(), /^554 5\.6\.0 .*bare LF/, 'a bare LF in DATA')
  await s3.next().catch((err: unknown) => t.type(err, SessionClosedError, 'and the connection closes'))

  // An operator's ejection.
  const eject = await fetch(`http://127.0.0.1:${node.adminPort}/api/backends/mx1/eject`, {
    method: 'POST',
    headers: { authorization: 'Bearer m3trics', 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'metrics test' }),
  })
  t.equal(eject.status, 200)

  const m = parseMetrics(await fetch(`http://127.0.0.1:${node.adminPort}/metrics`).then((r) => r.text()))
  t.same(m.by('mxgate_messages_total', 'outcome'), { relayed: 3, spooled: 1 }, 'nobody@ never got to DATA')
  t.same(
    m.series('mxgate_backend_attempts_total').map((s) => ({ ...s.labels, n: s.value })),
    [
      { backend: 'mx1', verdict: 'delivered', stage: 'dot', n: 3 },
      { backend: 'mx1', verdict: 'backend', stage: 'rcpt', n: 1 },
    ],
    'attempts by backend, verdict and the stage they ended at',
  )
  const [hist] = m.series('mxgate_backend_delivery_duration_seconds', { backend: 'mx1' })
  t.equal(hist?.value, 3, 'one duration per delivered attempt')
  t.equal(hist?.buckets?.['+Inf'], 3)
  t.equal(m.type('mxgate_backend_delivery_duration_seconds'), 'histogram')
  t.equal(m.value('mxgate_smtp_messages_received_total'), 5, 'final dots received: 4 relayed or spooled, 1 loop')
  t.same(
    m.by('mxgate_smtp_rejected_total', 'reason'),
    { unknown_recipient: 1, size: 1, syntax: 1, relay_denied: 1, loop: 1, bare_lf: 1 },
    'every refusal by reason, Haraka’s own included',
  )
  t.equal(m.value('mxgate_rcpt_denied_total'), 1)
  t.same(
    m.series('mxgate_verify_total').map((s) => ({ ...s.labels, n: s.value })),
    [
      // user@ asked once, then from memory for the two other messages and the loop and bare-LF sessions.
      { result: 'known', source: 'backend', n: 1 },
      { result: 'known', source: 'memory', n: 4 },
      { result: 'unknown', source: 'backend', n: 1 },
      { result: 'unavailable', source: 'backend', n: 1 },
    ],
    'recipient checks by result and where the answer came from',
  )
  t.equal(m.value('mxgate_spool_messages'), 1)
  const age = m.value('mxgate_spool_oldest_message_age_seconds')
  // In seconds, and no older than the message: bounded by when it was sent, not by how fast this machine is.
  const sinceSent = (Date.now() - laterSentAt) / 1000
  t.ok(age > 0 && age <= sinceSent, `the oldest spooled message's age (${age} s; sent ${sinceSent} s ago)`)
  t.same(m.by('mxgate_backend_ejections_total', 'reason'), { operator: 1 })
  t.same(
    m.series('mxgate_backend_consecutive_ejections').map((s) => [s.labels.backend, s.value]),
    [['mx1', 0]],
  )
  t.same(m.by('mxgate_spool_settled_total', 'how'), {}, 'nothing settled from the spool yet')
  t.same(
    m.series('mxgate_spool_duplicates_total').map((s) => [s.labels.cause, s.value]),
    [
      ['taken_over', 0],
      ['unsaved_at_stop', 0],
    ],
  )

  // Types and names dashboards rely on.
  t.equal(m.type('mxgate_spool_settled_total'), 'counter')
  t.equal(m.type('mxgate_spool_duplicates_total'), 'counter')
  t.equal(m.type('mxgate_smtp_rejected_total'), 'counter')
  t.equal(m.type('mxgate_backend_consecutive_ejections'), 'gauge')
  t.equal(m.type('process_cpu_seconds_total'), 'counter', 'standard process_* names')
  t.equal(m.type('process_resident_memory_bytes'), 'gauge')
  t.notOk(m.names().includes('mxgate_backend_ejections'), 'no gauge beside the ejections counter')
  t.same(
    m.names().filter((n) => n.startsWith('mxgate_process_') || n.startsWith('mxgate_nodejs_')),
    [],
    'no prefixed runtime metrics',
  )
  for (const name of m.names().filter((n) => n.startsWith('mxgate_') && n.endsWith('_total'))) {
    t.equal(m.type(name), 'counter', `${name} ends in _total, so it is a counter`)
  }
})

t.test('every mxgate_* metric in the README table is exported, and every exported one is listed', async (t) => {
  const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### Metrics'), readme.indexOf('## Configuration reference'))
  // The table's first column (the rename notes below it name old metrics).
  const cells = section
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split('|')[1]!)
  const listed = new Set(cells.flatMap((c) => [...c.matchAll(/`(mxgate_[a-z_]+)/g)].map((m) => m[1]!)))
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  // With Redis configured mxgate_redis_up is exported too (it stays 0 here: nothing listens there).
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port}`,
    env: { MXGATE_REDIS_URL: 'redis://127.0.0.1:1' },
  })
  t.teardown(() => node.stop())
  const m = parseMetrics(await fetch(`http://127.0.0.1:${node.adminPort}/metrics`).then((r) => r.text()))
  const exported = m.names().filter((n) => n.startsWith('mxgate_'))
  t.same(
    exported.filter((n) => !listed.has(n)),
    [],
    'exported but not in the README',
  )
  t.same(
    [...listed].filter((n) => !exported.includes(n)),
    [],
    'in the README but not exported',
  )
})
