// Recipient verification as a sender meets it: a real mxgate process (Haraka listening) checks each RCPT with real
// fake backends over loopback before answering it. Unknown recipients are refused at RCPT, never bounced later.
import net from 'node:net'
import t, { type Test } from 'tap'
import type { FaultRule } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { backend, configDir, eventually, type Node, send, spoolList, startNode, tempDir } from './helpers/spool-e2e'

const GHOST: FaultRule = { stage: 'rcpt', action: 'reply', rcpt: 'ghost', reply: '550 5.1.1 User unknown' }
const DOWN: FaultRule = { stage: 'connect', action: 'refuse' }

async function node(t: Test, faults: FaultRule[][], ini = '', env: Record<string, string> = {}) {
  const backends = await Promise.all(faults.map((f, i) => backend(t, { id: `mx${i + 1}`, faults: f })))
  const smarthost = await backend(t, { id: 'smarthost' })
  const config = configDir(t, `[spool]\nbounce_relay = 127.0.0.1:${smarthost.port}\nretry_first = 300ms\n${ini}`)
  const n = await startNode(t, { backends, config, spoolDir: tempDir(t, 'mxgate-verify-spool-'), env })
  return { node: n, backends, smarthost }
}

async function metrics(n: Node): Promise<string> {
  const token = (await import('node:fs')).readFileSync(n.tokenFile, 'utf8').trim()
  const res = await fetch(`${n.adminUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })
  return res.text()
}

t.test('an unknown user is refused at RCPT with 550 5.1.1; a known one is accepted', async (t) => {
  const { node: n, backends } = await node(t, [[GHOST], [GHOST]])
  const bad = await send(n, ['ghost@example.com'], makeTestMessage())
  t.equal(bad.stage, 'rcpt')
  t.equal(bad.code, 550)
  t.match(bad.reply, /^550 5\.1\.1 User unknown/)
  const good = await send(n, ['alice@example.com'], makeTestMessage({ messageId: 'good@test' }))
  t.equal(good.ok, true, good.reply)
  t.same(
    backends.flatMap((b) => b.received.map((m) => m.to)),
    [['alice@example.com']],
  )
  const m = await metrics(n)
  t.match(m, /mxgate_verify_total\{result="unknown",source="backend"\} 1/)
  t.match(m, /mxgate_verify_total\{result="known",source="backend"\} 1/)
})

t.test(
  'one good and one unknown recipient: the backend gets the good one only, and nobody gets a bounce',
  async (t) => {
    const { node: n, backends, smarthost } = await node(t, [[GHOST], [GHOST]])
    const r = await sendMessage({
      host: '127.0.0.1',
      port: n.port,
      from: 'sender@remote.test',
      to: ['bob@example.com', 'ghost@example.com'],
      message: makeTestMessage({ messageId: 'mixed@test' }),
      pipelining: true,
      timeoutMs: 20_000,
    })
    t.equal(r.ok, true, r.reply)
    t.same(
      r.rcptReplies.map((x) => x.code),
      [250, 550],
    )
    const got = backends.flatMap((b) => b.received.filter((m) => m.messageId === 'mixed@test'))
    t.same(
      got.map((m) => m.to),
      [['bob@example.com']],
    )
    t.same(await spoolList(n), [], 'nothing waits in the spool (no DSN to send)')
    t.equal(smarthost.received.length, 0, 'no DSN')
  },
)

t.test('a harvester is cut off with 421 after verify.harvest_limit unknown recipients', async (t) => {
  const { node: n } = await node(t, [[GHOST], [GHOST]], '[verify]\nharvest_limit = 3\nharvest_window = 1m\n')
  const replies = await rawDialogue(n.port, [
    'EHLO harvester.test',
    'MAIL FROM:<h@remote.test>',
    ...[1, 2, 3, 4, 5].map((i) => `RCPT TO:<ghost${i}@example.com>`),
  ])
  t.same(
    replies.slice(3).map((r) => r.slice(0, 3)),
    ['550', '550', '550', '421'],
    'three 550s, then 421 and the connection closes (the fifth RCPT is never answered)',
  )
  t.match(replies[6], /^421 4\.7\.0 Too many unknown recipients from 127\.0\.0\.1/)
  const again = await rawDialogue(n.port, [
    'EHLO harvester.test',
    'MAIL FROM:<h@remote.test>',
    'RCPT TO:<alice@example.com>',
  ])
  t.match(again[3], /^421 4\.7\.0/, 'the same client is still cut off on a new connection')
  t.match(await metrics(n), /mxgate_verify_harvest_cutoffs_total 2/)
})

t.test('all backends down: accepted by default (the message is spooled), 450 with on_timeout = defer', async (t) => {
  const fast = '[backend_client]\nconnect_timeout = 500ms\n[verify]\ntimeout = 2s\n'
  await t.test('on_timeout = accept', async (t) => {
    const { node: n } = await node(t, [[DOWN], [DOWN]], fast)
    const r = await send(n, ['carol@example.com'], makeTestMessage({ messageId: 'down@test' }))
    t.match(r.reply, /^250 .*queued/, 'taken unverified and spooled')
    t.equal((await spoolList(n)).length, 1)
  })
  await t.test('on_timeout = defer', async (t) => {
    const { node: n } = await node(t, [[DOWN], [DOWN]], `${fast}on_timeout = defer\n`)
    const r = await send(n, ['carol@example.com'], makeTestMessage())
    t.equal(r.stage, 'rcpt')
    t.match(r.reply, /^450 4\.4\.3 /)
    t.same(await spoolList(n), [])
  })
})

t.test('a backend down during verification: another answers', async (t) => {
  const { node: n, backends } = await node(t, [[DOWN], [GHOST]])
  const bad = await send(n, ['ghost@example.com'], makeTestMessage())
  // mx2 alone answered "no such user": with mx1 down nobody can confirm it, so the recipient is taken and the
  // delivery path (its own second opinion) decides; it is never refused on one backend's word.
  t.not(bad.code, 550)
  const good = await send(n, ['dave@example.com'], makeTestMessage({ messageId: 'dave@test' }))
  t.equal(good.ok, true, good.reply)
  t.equal(backends[1]!.received.filter((m) => m.messageId === 'dave@test').length, 1)
})

t.test('pipelined RCPTs are checked side by side', async (t) => {
  // slow@ never gets an answer from the backend; fast@ is answered at once, and a rule lets the test see when.
  const stall: FaultRule = { stage: 'rcpt', action: 'stall', rcpt: 'slow' }
  const seen: FaultRule = { stage: 'rcpt', action: 'reply', rcpt: 'fast', reply: '250 2.1.5 Ok' }
  const ini = '[backend_client]\nrcpt_timeout = 3s\n[verify]\ntimeout = 5s\n'
  const { node: n, backends } = await node(t, [[stall, seen]], ini)
  const client = await rawClient(n.port)
  t.teardown(() => client.close())
  await client.command('EHLO pipeliner.test')
  await client.command('MAIL FROM:<p@remote.test>')
  let repliesWhenFastAsked = -1
  backends[0]!.on('fault', (f) => {
    if (f.rcpt === 'fast@example.com' && repliesWhenFastAsked < 0) repliesWhenFastAsked = client.replies.length
  })
  const before = client.replies.length
  client.write('RCPT TO:<slow@example.com>\r\nRCPT TO:<fast@example.com>\r\n')
  t.ok(await eventually(() => client.replies.length >= before + 2, 15_000), 'both RCPTs answered')
  t.equal(repliesWhenFastAsked, before, 'fast@ was asked before the sender heard anything about slow@')
  t.match(client.replies[before], /^250 /, 'slow@ taken unverified when the backend did not answer')
  t.match(client.replies[before + 1], /^250 /)
})

t.test('a domain that opts out and a static list are answered without asking a backend', async (t) => {
  const ini = '[verify]\nskip_domains = skip.test\nstatic_recipients = ann@list.test\n'
  const env = { MXGATE_DOMAINS: 'example.com, skip.test, list.test' }
  const { node: n } = await node(t, [[GHOST], [GHOST]], ini, env)
  const skipped = await send(n, ['ghost@skip.test'], makeTestMessage())
  t.same(
    skipped.rcptReplies.map((r) => r.code),
    [250],
    'ghost@skip.test taken unchecked (its delivery then finds it unknown)',
  )
  const listed = await send(n, ['ann@list.test'], makeTestMessage({ messageId: 'ann@test' }))
  t.equal(listed.ok, true, listed.reply)
  const unlisted = await send(n, ['bob@list.test'], makeTestMessage())
  t.match(unlisted.reply, /^550 5\.1\.1 /)
  const m = await metrics(n)
  t.match(m, /mxgate_verify_total\{result="known",source="skipped"\} 1/)
  t.match(m, /mxgate_verify_total\{result="known",source="static"\} 1/)
  t.match(m, /mxgate_verify_total\{result="unknown",source="static"\} 1/)
  t.notMatch(m, /mxgate_verify_total\{[^}]*source="backend"\}/, 'no backend was asked')
})

t.test('MXGATE_VERIFY=off turns verification off', async (t) => {
  const { node: n, backends } = await node(t, [[GHOST]], '', { MXGATE_VERIFY: 'off' })
  const r = await send(n, ['ghost@example.com'], makeTestMessage())
  t.equal(r.stage, 'dot', 'refused after DATA, as before verification existed')
  t.equal(backends[0]!.received.length, 0)
})

interface RawClient {
  replies: string[]
  write(data: string): void
  command(line: string): Promise<string>
  close(): void
}

/** A raw SMTP connection that collects every reply, so a test can see when each arrives. */
async function rawClient(port: number): Promise<RawClient> {
  const s = net.connect(port, '127.0.0.1')
  const replies: string[] = []
  let buf = ''
  s.setEncoding('latin1')
  s.on('data', (d: string) => {
    buf += d
    for (
      let m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(buf);
      m;
      m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(buf)
    ) {
      buf = buf.slice(m[0].length)
      replies.push(m[0].trimEnd())
    }
  })
  let closed = false
  s.on('error', () => {})
  s.on('close', () => {
    closed = true
  })
  const client: RawClient = {
    replies,
    write: (data) => s.write(data),
    async command(line) {
      const n = replies.length
      s.write(`${line}\r\n`)
      if (!(await eventually(() => replies.length > n || closed, 10_000)) || replies.length === n)
        throw new Error(`no reply to ${line}`)
      return replies[n]!
    },
    close: () => s.destroy(),
  }
  if (!(await eventually(() => replies.length > 0, 10_000))) throw new Error('no banner')
  return client
}

/** Sends each command after the previous reply; stops when the server closes. Returns the banner and replies. */
async function rawDialogue(port: number, commands: string[]): Promise<string[]> {
  const c = await rawClient(port)
  try {
    for (const line of commands) {
      try {
        await c.command(line)
      } catch {
        break
      }
    }
    return [...c.replies]
  } finally {
    c.close()
  }
}
