// mxgate as operators run it: a real process with Haraka listening, real fake backends, a real SMTP client.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { type MxgateProcess, type StartOptions, startMxgate } from './helpers/mxgate-process'
import { waitFor } from './helpers/ports'

async function backend(t: Test, opts: ConstructorParameters<typeof FakeBackend>[0] = {}): Promise<FakeBackend> {
  const b = new FakeBackend(opts)
  await b.start()
  t.teardown(() => b.stop())
  return b
}

function configDir(t: Test, ini: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-e2e-cfg-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function mxgate(
  t: Test,
  backends: FakeBackend[],
  env: Record<string, string> = {},
  extra: Pick<StartOptions, 'args' | 'keepSpool'> = {},
): Promise<MxgateProcess> {
  const m = await startMxgate({ backends: backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','), env, ...extra })
  t.teardown(() => m.stop())
  return m
}

const send = (m: MxgateProcess, to: string[], message: Buffer, from = 'sender@remote.test') =>
  sendMessage({ host: '127.0.0.1', port: m.port, from, to, message, timeoutMs: 20_000 })

t.test('relays a message byte for byte, adding one Received header', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1])
  const raw = Buffer.concat([
    Buffer.from('Message-ID: <e2e-bytes@test>\r\nSubject: bytes '),
    // Raw 8-bit header bytes that are not valid UTF-8 (latin1 é, a lone continuation byte) must survive too.
    Buffer.from([0xe9, 0x80, 0x0d, 0x0a]),
    Buffer.from('X-Folded: one\r\n two\r\n\r\n.dot line\r\n..\r\n'),
    Buffer.from([0xe2, 0x82, 0xac, 0x0d, 0x0a]),
    Buffer.from(`${'y'.repeat(3000)}\r\nend\r\n`),
  ])
  const r = await send(m, ['user@example.com'], raw)
  t.equal(r.ok, true, r.reply)
  t.match(r.reply, /^250 2\.0\.0 Message accepted/)
  const got = b1.received[0]!
  const text = got.raw.toString('latin1')
  t.match(
    text,
    /^Received: from sender\.mxgate\.test \(127\.0\.0\.1 \[127\.0\.0\.1\]\)\r\n\tby mxgate\.localdomain \(mxgate\) with ESMTP id /,
  )
  const afterReceived = got.raw.subarray(got.raw.indexOf('Message-ID:'))
  t.ok(afterReceived.equals(raw), 'the sender’s bytes follow unchanged')
  t.equal((text.match(/^Received:/gm) ?? []).length, 1)
})

t.test('refuses recipients outside our domains with 550 5.7.1 (never an open relay)', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1])
  const r = await send(m, ['victim@elsewhere.test'], makeTestMessage())
  t.equal(r.ok, false)
  t.equal(r.stage, 'rcpt')
  t.match(r.rcptReplies[0]?.reply, /^550 5\.7\.1 <victim@elsewhere\.test>: relay access denied/)
  const mixed = await send(m, ['victim@elsewhere.test', 'user@EXAMPLE.com'], makeTestMessage())
  t.equal(mixed.ok, true, 'the local recipient still gets the message')
  t.same(b1.received.at(-1)?.to, ['user@EXAMPLE.com'])
})

t.test('spools when no backend takes the message, survives SIGKILL, delivers once a backend is back', async (t) => {
  const b1 = await backend(t, { id: 'mx1', faults: [{ stage: 'connect', action: 'refuse' }] })
  const cfgDir = configDir(t, '[spool]\nretry_first = 500ms\nretry_max = 1s\n[breaker]\nejection_time = 500ms\n')
  const m = await mxgate(t, [b1], {}, { args: ['--config', cfgDir], keepSpool: true })
  t.teardown(() => rmSync(m.spoolDir, { recursive: true, force: true }))
  const raw = makeTestMessage({ messageId: 'spooled-1@test' })
  const r = await send(m, ['user@example.com'], raw)
  t.equal(r.ok, true, r.reply)
  t.match(r.reply, /^250 2\.0\.0 Message accepted for delivery \(queued\)/)
  // The 250 promised durability: kill -9 right away and the message must be on disk.
  m.proc.kill('SIGKILL')
  await m.stop()
  const files = readdirSync(m.spoolDir).filter((f) => f.endsWith('.msg'))
  t.ok(files.length >= 1, `spool file present after SIGKILL: ${files.join(', ')}`)

  await b1.setFaults([])
  const m2 = await mxgate(t, [b1], { MXGATE_SPOOL_DIR: m.spoolDir }, { args: ['--config', cfgDir], keepSpool: true })
  t.ok(await waitFor(() => b1.received.length >= 1, 15_000), 'delivered after restart')
  t.equal(b1.received.length, 1, 'exactly once')
  t.equal(b1.received[0]?.messageId, 'spooled-1@test')
  t.ok(await waitFor(() => m2.logs.some((l) => l.msg === 'spooled message settled'), 5000))
  t.ok(
    await waitFor(() => readdirSync(m.spoolDir).filter((f) => f.endsWith('.msg')).length === 0, 5000),
    `spool empty: ${readdirSync(m.spoolDir).join(', ')}`,
  )
  t.equal(b1.received.length, 1, 'still exactly once now that nothing is left to retry')
})

t.test('answers 451 4.3.4 when the spool is full', async (t) => {
  const b1 = await backend(t, { id: 'mx1', faults: [{ stage: 'connect', action: 'refuse' }] })
  const cfgDir = configDir(t, '[spool]\nmax_messages = 1\n')
  const m = await mxgate(t, [b1], {}, { args: ['--config', cfgDir] })
  const first = await send(m, ['user@example.com'], makeTestMessage())
  t.match(first.reply, /^250 /)
  const second = await send(m, ['user@example.com'], makeTestMessage())
  t.match(second.reply, /^451 4\.3\.4 Insufficient system storage/)
  const third = await send(m, ['user@example.com'], makeTestMessage())
  t.match(third.reply, /^451 4\.3\.4 /)
  t.ok(await waitFor(() => m.logs.filter((l) => l.msg === 'spool refused the message').length === 2))
  const episodes = m.logs.filter((l) => String(l.msg).startsWith('spool refuses mail'))
  t.equal(episodes.length, 1, 'the full spool is logged once per episode, not per message')
})

t.test('passes a backend’s permanent refusal back with its own code', async (t) => {
  const b1 = await backend(t, {
    id: 'mx1',
    faults: [{ stage: 'dot', action: 'reply', reply: '554 5.6.0 Content rejected' }],
  })
  const m = await mxgate(t, [b1], { MXGATE_WORKERS: '0' })
  const r = await send(m, ['user@example.com'], makeTestMessage())
  t.match(r.reply, /^554 5\.6\.0 Content rejected/)
})

t.test('passes a temporary recipient refusal back as 4xx', async (t) => {
  const b1 = await backend(t, {
    id: 'mx1',
    faults: [{ stage: 'rcpt', action: 'reply', reply: '452 4.2.2 Mailbox full' }],
  })
  const m = await mxgate(t, [b1])
  const r = await send(m, ['user@example.com'], makeTestMessage())
  t.match(r.reply, /^452 4\.2\.2 Mailbox full/)
})

t.test('fails over, ejects the broken backend with its reason, and reuses backend sessions', async (t) => {
  const bad = await backend(t, {
    id: 'bad',
    faults: [{ stage: 'banner', action: 'reply', reply: '421 4.3.2 Go away' }],
  })
  const good = await backend(t, { id: 'good' })
  const m = await mxgate(t, [bad, good])
  for (let i = 0; i < 20; i++) {
    const r = await send(m, ['user@example.com'], makeTestMessage())
    t.equal(r.ok, true, `message ${i} accepted`)
  }
  t.equal(good.received.length, 20, 'all 20 delivered by the healthy backend')
  t.ok(good.counters.connections < 20, `sessions reused (${good.counters.connections} connections for 20 messages)`)
  // Log lines come over the node's stdout pipe, not over SMTP: wait for the line rather than assume it is in.
  const isEjection = (l: Record<string, unknown>) => l.to === 'ejected' && l.backend === 'bad'
  t.ok(await waitFor(() => m.logs.some(isEjection)), 'ejection logged')
  const ejected = m.logs.find(isEjection)
  t.match(String(ejected?.reason), /attempts failed.*421 4\.3\.2/)
})

t.test('runs with worker processes (one per core)', async (t) => {
  const b1 = await backend(t, { id: 'mx1' })
  const m = await mxgate(t, [b1], { MXGATE_WORKERS: '2' })
  for (let i = 0; i < 5; i++) {
    const r = await send(m, ['user@example.com'], makeTestMessage())
    t.equal(r.ok, true, r.reply)
  }
  t.equal(b1.received.length, 5)
  t.equal(await m.stop(), 0, 'master stops its workers and exits cleanly')
})
