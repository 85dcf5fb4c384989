// A client that keeps making mistakes is sent away: after smtp.max_errors error replies without delivering a message,
// the last one is followed by 421 4.7.0 and the connection closes (Postfix's smtpd_hard_error_limit). Refused
// recipients count; a delivered message starts the count again; replies to the end of DATA never count. Past
// smtp.max_junk_commands, each NOOP/RSET/VRFY/… counts as an error (smtpd_junk_command_limit).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { countsAsError, isJunkCommand } from '../../src/inbound/limits'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'
import { parseMetrics } from '../helpers/prom'
import { SessionClosedError, SmtpSession } from '../helpers/smtp-session'

const CUT = /^421 4\.7\.0 Too many errors \(3\) without a message delivered; closing connection$/

async function node(t: Test, ini: string) {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-errors-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}`, args: ['--config', dir] })
  t.teardown(() => m.stop())
  return { b, m }
}

async function closedAfter(t: Test, s: SmtpSession, what: string): Promise<void> {
  await t.rejects(s.next(), SessionClosedError, `${what}: then the connection is closed`)
}

async function send(s: SmtpSession, tag: string): Promise<string> {
  await s.command('MAIL FROM:<s@remote.test>')
  await s.command('RCPT TO:<user@example.com>')
  await s.command('DATA')
  return s.command(`Subject: ${tag}\r\n\r\nbody\r\n.`)
}

t.test('which replies count: the client’s mistakes (5xx), not what mxgate cannot take now (4xx)', async (t) => {
  t.ok(countsAsError(500), 'unknown command')
  t.ok(countsAsError(501), 'bad syntax')
  t.ok(countsAsError(503), 'bad sequence')
  t.ok(countsAsError(550), 'relay denied, unknown recipient')
  t.notOk(countsAsError(250))
  t.notOk(countsAsError(450), 'a recipient check that timed out (verify.on_timeout = defer)')
  t.notOk(countsAsError(452), 'recipients beyond max_recipients')
  t.notOk(countsAsError(421), 'the connection closes anyway')
})

t.test('which commands are junk', async (t) => {
  for (const c of ['NOOP', 'noop', 'RSET', 'VRFY postmaster', 'HELP', 'EXPN list', 'ETRN example.com', 'NOOP x'])
    t.ok(isJunkCommand(c), c)
  for (const c of ['MAIL FROM:<a@b.test>', 'RCPT TO:<a@b.test>', 'DATA', 'EHLO x', 'QUIT', 'NOOPS', 'RSETX'])
    t.notOk(isJunkCommand(c), c)
})

t.test('the max_errors-th error reply is followed by 421 4.7.0 and the connection closes', async (t) => {
  const { b, m } = await node(t, '[smtp]\nmax_errors = 3\n')
  const { session: s } = await SmtpSession.open(m.port)
  t.match(await s.command('EHLO client.test'), /^250/)
  t.match(await s.command('FOO'), /^500 /, 'an unknown command: error 1')
  await s.command('MAIL FROM:<s@remote.test>')
  t.match(await s.command('RCPT TO:<x@elsewhere.test>'), /^550 5\.7\.1 /, 'a relay attempt: error 2')
  t.match(await s.command('NOOP'), /^250/, 'a good command does not end the count')
  t.match(await s.command('BAR'), /^500 /, 'error 3 is answered as ever…')
  t.match(await s.next(), CUT, '…and followed by the 421')
  await closedAfter(t, s, 'the third error')
  t.equal(b.received.length, 0)

  // Pipelined junk behind the last error never runs: one 421, then the close.
  const { session: p } = await SmtpSession.open(m.port)
  t.match(await p.command('EHLO client.test'), /^250/)
  p.write('FOO\r\nFOO\r\nFOO\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<user@example.com>\r\n')
  for (let i = 0; i < 3; i++) t.match(await p.next(), /^500 /)
  t.match(await p.next(), CUT)
  await closedAfter(t, p, 'a pipelined burst')

  const metrics = parseMetrics(await fetch(`http://127.0.0.1:${m.adminPort}/metrics`).then((r) => r.text()))
  t.equal(metrics.by('mxgate_smtp_rejected_total', 'reason').error_limit, 2, 'counted as error_limit')
})

t.test('a delivered message starts the count again; refusals at the end of DATA do not count', async (t) => {
  const { b, m } = await node(t, '[smtp]\nmax_errors = 3\n')
  const { session: s } = await SmtpSession.open(m.port)
  await s.command('EHLO client.test')
  t.match(await s.command('FOO'), /^500 /)
  t.match(await s.command('FOO'), /^500 /)
  t.match(await send(s, 'first'), /^250 /, 'delivered: the count starts again')
  t.match(await s.command('FOO'), /^500 /)
  t.match(await s.command('FOO'), /^500 /)
  t.match(await s.command('NOOP'), /^250/, 'still open after four errors in all, two since the delivery')

  // Messages refused at the end of DATA (a NUL in each): the client finished each transaction.
  for (let i = 0; i < 4; i++) t.match(await send(s, `refused-${i}\0`), /^554 5\.6\.0 /, `refused message ${i + 1}`)
  t.match(await s.command('NOOP'), /^250/, 'four refused messages did not close the connection')
  t.match(await s.command('FOO'), /^500 /, 'the third error since the delivery…')
  t.match(await s.next(), CUT, '…closes it')
  await closedAfter(t, s, 'the third error')
  t.equal(b.received.length, 1, 'only the first message was delivered')
})

t.test(
  'past max_junk_commands each NOOP or RSET counts as an error; a delivery starts both counts again',
  async (t) => {
    const { b, m } = await node(t, '[smtp]\nmax_errors = 3\nmax_junk_commands = 2\n')
    const { session: s } = await SmtpSession.open(m.port)
    await s.command('EHLO client.test')
    t.match(await s.command('NOOP'), /^250/, 'junk 1')
    t.match(await s.command('RSET'), /^250/, 'junk 2')
    t.match(await s.command('NOOP'), /^250/, 'junk 3: error 1')
    t.match(await s.command('NOOP'), /^250/, 'junk 4: error 2')
    t.match(await send(s, 'keeps it'), /^250 /, 'a delivery: both counts start again')
    for (let i = 0; i < 4; i++) t.match(await s.command(i % 2 ? 'RSET' : 'NOOP'), /^250/, `junk ${i + 1} since`)
    t.match(await s.command('NOOP'), /^250/, 'junk 5 since the delivery: error 3, answered…')
    t.match(await s.next(), CUT, '…then the 421')
    await closedAfter(t, s, 'the last junk command')
    t.equal(b.received.length, 1)
  },
)

t.test('max_errors = 0: no limit', async (t) => {
  const { m } = await node(t, '[smtp]\nmax_errors = 0\n')
  const { session: s } = await SmtpSession.open(m.port)
  await s.command('EHLO client.test')
  for (let i = 0; i < 30; i++) t.match(await s.command('FOO'), /^500 /)
  t.match(await s.command('NOOP'), /^250/, 'open after 30 errors')
  s.end()
})
