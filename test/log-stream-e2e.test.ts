// One log stream through the real `mxgate start`: every stdout line is one pino JSON record, Haraka's own lines
// included (part "haraka"); one level filters both; redact_addresses keeps envelope addresses out of every line.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { type MxgateProcess, startMxgate, waitForLogs } from './helpers/mxgate-process'

const SENDER = 'hidden.sender@remote.test'
const RCPT = 'secretuser@example.com'

async function runOne(t: Test, env: Record<string, string>): Promise<{ node: MxgateProcess; lines: string[] }> {
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}`, env })
  t.teardown(() => node.stop())
  const sent = await sendMessage({
    host: '127.0.0.1',
    port: node.port,
    from: SENDER,
    to: [RCPT, 'elsewhere@other.test'],
    message: makeTestMessage(),
  })
  t.equal(sent.ok, true, 'the message is relayed (the foreign recipient refused)')
  await node.stop()
  return {
    node,
    lines: node
      .stdout()
      .split('\n')
      .filter((l) => l !== ''),
  }
}

t.test('debug with redaction: one JSON stream, Haraka inside it, no envelope address anywhere', async (t) => {
  const { lines } = await runOne(t, { MXGATE_LOG_LEVEL: 'debug', MXGATE_LOG_REDACT_ADDRESSES: 'true' })
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(records.length, lines.length, 'every stdout line is one JSON record')
  t.same(
    records.filter((r) => typeof r.level !== 'number' || typeof r.time !== 'string' || typeof r.part !== 'string'),
    [],
    'each with a level, a time and a part',
  )
  t.same(
    lines.filter((l) => (l.match(/"msg":/g) ?? []).length !== 1),
    [],
    'one msg per record',
  )
  const haraka = records.filter((r) => r.part === 'haraka')
  t.ok(haraka.length > 0, `Haraka's own lines are in the stream (${haraka.length})`)
  t.ok(
    haraka.some((r) => typeof r.origin === 'string' && typeof r.msg === 'string'),
    "with Haraka's origin and message",
  )
  t.same(
    lines.filter((l) => l.includes('hidden.sender') || l.includes('secretuser') || l.includes('elsewhere@')),
    [],
    'no local part of an envelope address in any line',
  )
  const relayed = records.find((r) => r.msg === 'relayed')
  t.equal(relayed?.from, '***@remote.test', 'the domain stays')
})

t.test('warn: one level for both, mxgate’s and Haraka’s lines alike', async (t) => {
  const { node, lines } = await runOne(t, { MXGATE_LOG_LEVEL: 'warn' })
  const records = lines.map((l) => JSON.parse(l) as { level: number; part: string })
  t.same(
    records.filter((r) => r.level < 40),
    [],
    'nothing below warn',
  )
  t.ok(node.logs.length === records.length, 'the helper parsed them all')
})

t.test('without redaction the addresses are logged as they are', async (t) => {
  const { node } = await runOne(t, {})
  await waitForLogs(node, (l) => l.some((r) => r.msg === 'relayed'), 'relayed')
  t.equal(node.logs.find((r) => r.msg === 'relayed')?.from, SENDER)
})
