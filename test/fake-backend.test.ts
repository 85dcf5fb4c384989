import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import t from 'tap'
import { runFakeBackendCommand } from '../src/cli/fake-backend-cmd'
import { FakeBackend, type FakeBackendOptions } from '../src/testing/fake-backend'
import { DotDecoder, extractMessageId } from '../src/testing/fake-backend-session'
import { FaultRuleError, type FaultStage, formatReply, pickFault } from '../src/testing/fault-rules'
import { makeTestMessage, type SendResult, sendMany, sendMessage } from '../src/testing/smtp-sender'
import { waitFor } from './helpers/ports'

async function startBackend(tt: tap.Test, opts: FakeBackendOptions = {}): Promise<FakeBackend> {
  const backend = new FakeBackend(opts)
  await backend.start()
  tt.teardown(() => backend.stop())
  return backend
}

function send(backend: FakeBackend, extra: Partial<Parameters<typeof sendMessage>[0]> = {}): Promise<SendResult> {
  return sendMessage({
    host: '127.0.0.1',
    port: backend.port,
    from: 'sender@example.test',
    to: ['rcpt@example.test'],
    message: makeTestMessage(),
    timeoutMs: 5000,
    ...extra,
  })
}

/** A raw SMTP client: write exact bytes, read replies one complete (multi-line) reply at a time. */
class RawClient {
  private buffered = ''
  private lines: string[] = []
  private readonly replies: string[] = []
  private wake: (() => void) | null = null
  readonly closed: Promise<void>
  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1')
    socket.on('error', () => {})
    socket.on('data', (chunk: string) => {
      this.buffered += chunk
      for (let eol = this.buffered.indexOf('\r\n'); eol !== -1; eol = this.buffered.indexOf('\r\n')) {
        const line = this.buffered.slice(0, eol)
        this.buffered = this.buffered.slice(eol + 2)
        this.lines.push(line)
        if (line[3] !== '-') {
          this.replies.push(this.lines.join('\n'))
          this.lines = []
        }
      }
      this.wake?.()
    })
    this.closed = once(socket, 'close').then(() => undefined)
    void this.closed.then(() => this.wake?.())
  }

  static async open(tt: tap.Test, port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1')
    tt.teardown(() => socket.destroy())
    await once(socket, 'connect')
    return new RawClient(socket)
  }

  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** The next n replies; rejects if they do not all come within timeoutMs or the connection closes first. */
  async read(n = 1, timeoutMs = 5000): Promise<string[]> {
    const until = Date.now() + timeoutMs
    while (this.replies.length < n) {
      if (this.socket.destroyed) throw new Error(`connection closed after ${this.replies.length}/${n} replies`)
      const left = until - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${n} replies, got ${this.replies.length}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = null
    }
    return this.replies.splice(0, n)
  }
}

const codes = (replies: string[]): number[] => replies.map((r) => Number(r.slice(0, 3)))

t.test('accepts a message and records envelope, Message-ID, bytes and counters', async (t) => {
  const backend = await startBackend(t, { id: 'b1' })
  const seen: string[] = []
  backend.on('message', (m) => seen.push(m.messageId ?? ''))
  const message = makeTestMessage({ messageId: 'one@test' })
  const r = await send(backend, { to: ['a@example.test', 'b@example.test'], message })
  t.ok(r.ok, 'the sender sees 2xx after the dot')
  t.equal(r.stage, 'dot')
  t.equal(r.code, 250)
  t.equal(backend.received.length, 1)
  const m = backend.received[0]!
  t.equal(m.messageId, 'one@test')
  t.equal(m.from, 'sender@example.test')
  t.same(m.to, ['a@example.test', 'b@example.test'])
  t.ok(m.raw.equals(message), 'raw bytes equal what was sent')
  t.equal(m.size, message.length)
  t.match(m.sessionId, /^b1-/)
  t.same(seen, ['one@test'], "a 'message' event per accepted message")
  t.same(backend.counters, { connections: 1, sessions: 1, messages: 1, discarded: 0, faultsInjected: 0 })
})

t.test('keeps message bytes exact: dots at line start, 8-bit bytes, a 2000-char line, CRLF', async (t) => {
  const backend = await startBackend(t)
  const message = Buffer.concat([
    Buffer.from('Message-ID: <exact@test>\r\nSubject: bytes\r\n\r\n'),
    Buffer.from('.leading dot\r\n..two dots\r\n.\r\n. space\r\n'),
    Buffer.from([0xe9, 0xff, 0x00, 0x80, 0x0d, 0x0a]),
    Buffer.from(`${'L'.repeat(2000)}\r\nlast line without a dot\r\n`),
  ])
  const r = await send(backend, { message })
  t.ok(r.ok)
  t.ok(backend.received[0]?.raw.equals(message), 'un-dot-stuffed bytes equal the original')

  // The same over raw net, one byte per write, so every split point of the DATA stream is crossed.
  const client = await RawClient.open(t, backend.port)
  await client.read()
  client.write('EHLO raw\r\nMAIL FROM:<x@test>\r\nRCPT TO:<y@test>\r\nDATA\r\n')
  t.same(codes(await client.read(4)), [250, 250, 250, 354])
  const stuffed = Buffer.from('a\r\n..b\r\n..\r\n\r\n.c\r\n.\r\n')
  for (const byte of stuffed) client.write(Buffer.from([byte]))
  t.same(codes(await client.read()), [250])
  t.equal(backend.received[1]?.raw.toString('latin1'), 'a\r\n.b\r\n.\r\n\r\nc\r\n')
  t.ok(backend.received[1]?.wire.equals(stuffed.subarray(0, -3)), 'wire keeps the stuffing, drops the final dot line')
})

t.test('DotDecoder and extractMessageId', async (t) => {
  const d = new DotDecoder()
  t.equal(d.feed(Buffer.from('x\r\n.')), null)
  t.equal(d.feed(Buffer.from('\r')), null)
  t.equal(d.feed(Buffer.from('\nQUIT\r\n'))?.toString(), 'QUIT\r\n', 'returns the bytes after the final dot')
  t.equal(d.message().toString(), 'x\r\n')
  t.equal(d.wire().toString(), 'x\r\n', 'wire ends before the final dot, across chunk splits')
  const stuffed = new DotDecoder()
  t.equal(stuffed.feed(Buffer.from('..a\r\n.')), null)
  t.equal(stuffed.feed(Buffer.from('.\r\n.\r\nRSET\r\n'))?.toString(), 'RSET\r\n')
  t.equal(stuffed.message().toString(), '.a\r\n.\r\n')
  t.equal(stuffed.wire().toString(), '..a\r\n..\r\n', 'wire keeps dot-stuffing')
  const empty = new DotDecoder()
  t.equal(empty.feed(Buffer.from('.\r\n'))?.length, 0, 'an empty message ends at once')
  t.equal(empty.message().length, 0)
  t.equal(empty.wire().length, 0)
  t.equal(extractMessageId(Buffer.from('Subject: a\r\nMessage-Id:\r\n <folded@x>\r\n\r\nbody')), 'folded@x')
  t.equal(extractMessageId(Buffer.from('Subject: a\r\n\r\nMessage-ID: <in-body@x>\r\n')), null)
})

const REPLY_STAGES: FaultStage[] = ['banner', 'ehlo', 'mail', 'rcpt', 'data', 'dot']

t.test('reply fault: the client sees the configured reply at that stage, and nothing is recorded', async (t) => {
  for (const stage of REPLY_STAGES) {
    const reply = `451 4.3.0 Temporary failure at ${stage}`
    const backend = await startBackend(t, { faults: [{ stage, action: 'reply', reply }] })
    const faults: string[] = []
    backend.on('fault', (f) => faults.push(`${f.stage}/${f.action}`))
    const r = await send(backend)
    t.equal(r.ok, false, `${stage}: not ok`)
    t.equal(r.stage, stage, `${stage}: the dialogue ends at ${stage}`)
    t.equal(r.code, 451, `${stage}: code 451`)
    t.equal(r.reply, reply, `${stage}: full reply text`)
    t.equal(backend.received.length, 0, `${stage}: nothing received`)
    t.same(faults, [`${stage}/reply`], `${stage}: one fault event`)
    t.equal(backend.counters.faultsInjected, 1)
  }
})

t.test('stall fault: never answers at the stage, the client times out', async (t) => {
  for (const stage of ['connect', ...REPLY_STAGES] as FaultStage[]) {
    const backend = await startBackend(t, { faults: [{ stage, action: 'stall' }] })
    const r = await send(backend, { timeoutMs: 300 })
    t.equal(r.ok, false, `${stage}: not ok`)
    t.equal(r.stage, stage === 'connect' ? 'banner' : stage, `${stage}: stops at that stage`)
    t.match(r.error, /no reply within 300 ms/, `${stage}: the client timed out`)
    t.equal(backend.received.length, 0)
    if (stage === 'dot') t.equal(backend.stalledAfterDot.length, 1, 'the stalled message is listed apart')
  }
})

t.test('drop fault: closes without a reply; after the dot the message goes to droppedAfterDot', async (t) => {
  for (const stage of ['connect', ...REPLY_STAGES] as FaultStage[]) {
    const backend = await startBackend(t, { faults: [{ stage, action: 'drop' }] })
    const r = await send(backend)
    t.equal(r.ok, false, `${stage}: not ok`)
    t.equal(r.stage, stage === 'connect' ? 'banner' : stage, `${stage}: stops at that stage`)
    t.match(r.error, /closed by the server|ECONNRESET|EPIPE/, `${stage}: the connection went away`)
    t.equal(backend.received.length, 0, `${stage}: not in received`)
    t.equal(backend.droppedAfterDot.length, stage === 'dot' ? 1 : 0, `${stage}: droppedAfterDot`)
  }
})

t.test('refuse: ECONNREFUSED, then setFaults([]) accepts again on the same port', async (t) => {
  const backend = await startBackend(t, { faults: [{ stage: 'connect', action: 'refuse' }] })
  const port = backend.port
  t.ok(port > 0, 'a port is known even though it refuses')
  const refused = await send(backend)
  t.equal(refused.ok, false)
  t.equal(refused.stage, 'connect')
  t.match(refused.error, /ECONNREFUSED/)
  await backend.setFaults([])
  t.equal(backend.port, port)
  t.ok((await send(backend)).ok, 'accepts again on the same port')
  await backend.setFaults([{ stage: 'connect', action: 'refuse' }])
  t.match((await send(backend)).error, /ECONNREFUSED/, 'and refuses again when flipped back')
})

t.test('reset: accepts the connection and resets it before the banner', async (t) => {
  const backend = await startBackend(t, { faults: [{ stage: 'connect', action: 'reset' }] })
  const r = await send(backend)
  t.equal(r.ok, false)
  // The RST can overtake the client's own "connected" event, so the sender may place it at connect or at banner.
  t.ok(r.stage === 'connect' || r.stage === 'banner', `ends at ${r.stage}`)
  t.match(r.error, /ECONNRESET/)
  t.equal(backend.counters.connections, 1)
  t.equal(backend.counters.sessions, 0)
})

t.test('421 at banner: the reply, then the connection closes', async (t) => {
  const backend = await startBackend(t, {
    faults: [{ stage: 'banner', action: 'reply', reply: '421 4.3.2 Service not available' }],
  })
  const client = await RawClient.open(t, backend.port)
  t.same(await client.read(), ['421 4.3.2 Service not available'])
  await client.closed
  t.pass('closed by the server')
})

t.test('554 at banner: every command but QUIT gets 503, QUIT gets 221', async (t) => {
  const backend = await startBackend(t, { faults: [{ stage: 'banner', action: 'reply', reply: '554 5.3.2 No' }] })
  const client = await RawClient.open(t, backend.port)
  client.write('EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n')
  t.same(codes(await client.read(4)), [554, 503, 503, 221])
})

t.test('a rcpt rule with an address applies to that recipient only', async (t) => {
  const backend = await startBackend(t, {
    faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'BOB@' }],
  })
  const r = await send(backend, { to: ['alice@example.test', 'bob@example.test', 'carol@example.test'] })
  t.ok(r.ok, 'the message goes through for the others')
  t.same(
    r.rcptReplies.map((x) => [x.rcpt, x.code]),
    [
      ['alice@example.test', 250],
      ['bob@example.test', 550],
      ['carol@example.test', 250],
    ],
  )
  t.same(backend.received[0]?.to, ['alice@example.test', 'carol@example.test'])
})

t.test('probability with a seed: 0.3 over 200 messages lands in a sane band, the same every run', async (t) => {
  const failures: number[] = []
  for (let run = 0; run < 2; run++) {
    const backend = await startBackend(t, {
      seed: 42,
      faults: [{ stage: 'dot', action: 'reply', reply: '451 4.3.0 Flaky', probability: 0.3 }],
    })
    const results = await sendMany({
      target: { host: '127.0.0.1', port: backend.port },
      count: 200,
      concurrency: 8,
      make: () => ({ from: 's@test', to: ['r@test'], message: makeTestMessage() }),
      timeoutMs: 5000,
    })
    const failed = results.filter((r) => !r.ok)
    t.ok(
      failed.every((r) => r.code === 451 && r.stage === 'dot'),
      'every failure is the configured reply',
    )
    t.equal(backend.received.length, 200 - failed.length, 'the others were received')
    failures.push(failed.length)
  }
  t.ok(failures[0]! >= 35 && failures[0]! <= 85, `${failures[0]} of 200 failed (expected about 60)`)
  t.equal(failures[0], failures[1], 'the same seed gives the same number of failures')
})

t.test('several messages on one connection: consecutive MAIL, and MAIL after RSET', async (t) => {
  const backend = await startBackend(t)
  const client = await RawClient.open(t, backend.port)
  t.same(codes(await client.read()), [220])
  client.write('EHLO raw.test\r\n')
  await client.read()
  for (const id of ['m1', 'm2']) {
    client.write(`MAIL FROM:<s@test>\r\nRCPT TO:<r@test>\r\nDATA\r\n`)
    t.same(codes(await client.read(3)), [250, 250, 354])
    client.write(`Message-ID: <${id}@test>\r\n\r\nbody ${id}\r\n.\r\n`)
    t.same(codes(await client.read()), [250])
  }
  client.write('MAIL FROM:<s@test>\r\nRCPT TO:<r@test>\r\nRSET\r\nMAIL FROM:<s2@test>\r\nRCPT TO:<r2@test>\r\nDATA\r\n')
  t.same(codes(await client.read(6)), [250, 250, 250, 250, 250, 354])
  client.write('Message-ID: <m3@test>\r\n\r\nbody m3\r\n.\r\nQUIT\r\n')
  t.same(codes(await client.read(2)), [250, 221])
  t.same(
    backend.received.map((m) => [m.messageId, m.from, m.to]),
    [
      ['m1@test', 's@test', ['r@test']],
      ['m2@test', 's@test', ['r@test']],
      ['m3@test', 's2@test', ['r2@test']],
    ],
  )
  t.equal(new Set(backend.received.map((m) => m.sessionId)).size, 1, 'all over one session')
  t.same(backend.counters, { connections: 1, sessions: 1, messages: 3, discarded: 0, faultsInjected: 0 })
})

t.test('pipelining: advertised by default, pipelined groups are answered in order', async (t) => {
  const backend = await startBackend(t, { acceptDelayMs: 20 })
  const client = await RawClient.open(t, backend.port)
  await client.read()
  client.write('EHLO raw.test\r\n')
  t.match((await client.read())[0], /^250-PIPELINING$/m)
  // Two whole transactions plus NOOP in one write; the accept delay must not let later replies overtake.
  const tx = (id: string) =>
    `MAIL FROM:<s@test>\r\nRCPT TO:<a@test>\r\nRCPT TO:<b@test>\r\nDATA\r\nMessage-ID: <${id}>\r\n\r\nx\r\n.\r\n`
  client.write(`${tx('p1@test')}${tx('p2@test')}NOOP\r\n`)
  const replies = await client.read(11)
  t.same(codes(replies), [250, 250, 250, 354, 250, 250, 250, 250, 354, 250, 250])
  t.match(replies[4], /queued/)
  t.match(replies[9], /queued/)
  t.same(
    backend.received.map((m) => m.messageId),
    ['p1@test', 'p2@test'],
  )

  const r = await send(backend, { pipelining: true, to: ['a@test', 'b@test'] })
  t.ok(r.ok, 'the sender in pipelining mode delivers')
  t.equal(r.rcptReplies.length, 2)

  const plain = await startBackend(t, { pipelining: false })
  const c2 = await RawClient.open(t, plain.port)
  await c2.read()
  c2.write('EHLO raw.test\r\n')
  t.notMatch((await c2.read())[0], /PIPELINING/, 'not advertised when pipelining is false')
})

t.test('setFaults flips a backend bad and good at run time; bad rules are refused', async (t) => {
  const backend = await startBackend(t)
  t.ok((await send(backend)).ok)
  await backend.setFaults([{ stage: 'mail', action: 'reply', reply: '452 4.3.1 Full' }])
  t.equal((await send(backend)).code, 452)
  await backend.setFaults([])
  t.ok((await send(backend)).ok)
  await t.rejects(backend.setFaults([{ stage: 'dot', action: 'refuse' }]), FaultRuleError)
  await t.rejects(backend.setFaults([{ stage: 'dot', action: 'reply' }]), { code: 'EFAULTRULE' })
  t.throws(() => new FakeBackend({ faults: [{ stage: 'rcpt', action: 'reply', reply: 'oops' }] }), {
    code: 'EFAULTRULE',
    message: /must start with a 3-digit code/,
  })
})

t.test('fault rules: multi-line replies, first matching rule wins, recipient filter', async (t) => {
  t.equal(formatReply('451 4.3.0 first\n451 4.3.0 second'), '451-4.3.0 first\r\n451 4.3.0 second\r\n')
  t.equal(formatReply('550 5.1.1 No\nsuch user'), '550-5.1.1 No\r\n550 such user\r\n')
  const never = () => 0.99
  const rules = [
    { stage: 'rcpt', action: 'reply', reply: '550 5.1.1 bob', rcpt: 'bob' },
    { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 rare', probability: 0.5 },
    { stage: 'rcpt', action: 'stall' },
  ] as const
  t.equal(pickFault([...rules], 'rcpt', never, 'Bob@x')?.reply, '550 5.1.1 bob', 'the filter is case-insensitive')
  t.equal(pickFault([...rules], 'rcpt', never, 'eve@x')?.action, 'stall', 'a rule that does not fire is skipped')
  t.equal(pickFault([...rules], 'mail', never), null)

  const backend = await startBackend(t, {
    faults: [{ stage: 'data', action: 'reply', reply: '452 4.3.1 Queue full\n452 4.3.1 Try later' }],
  })
  const client = await RawClient.open(t, backend.port)
  await client.read()
  client.write('EHLO x\r\nMAIL FROM:<a@t>\r\nRCPT TO:<b@t>\r\nDATA\r\n')
  const replies = await client.read(4)
  t.equal(replies[3], '452-4.3.1 Queue full\n452 4.3.1 Try later', 'sent as one multi-line reply')
})

t.test('stop() closes stalled sessions and pending accept delays, and is idempotent', async (t) => {
  const stalled = new FakeBackend({ faults: [{ stage: 'ehlo', action: 'stall' }] })
  await stalled.start()
  const client = await RawClient.open(t, stalled.port)
  await client.read()
  client.write('EHLO x\r\n')

  const slow = new FakeBackend({ acceptDelayMs: 60_000 })
  await slow.start()
  const waiting = await RawClient.open(t, slow.port)
  await waiting.read()
  waiting.write('EHLO x\r\nMAIL FROM:<a@t>\r\nRCPT TO:<b@t>\r\nDATA\r\n')
  await waiting.read(4)
  waiting.write('Subject: slow\r\n\r\nx\r\n.\r\n')
  await t.rejects(waiting.read(1, 200), 'the 250 is held back by the accept delay')

  await Promise.all([stalled.stop(), stalled.stop(), slow.stop()])
  await client.closed
  await waiting.closed
  t.pass('both clients were disconnected')
  t.equal(slow.received.length, 0, 'a message never answered is not received')
  await stalled.stop()
})

t.test('mxgate fake-backend: bad options exit 2 with a message naming the option', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--port', 'abc'], /--port must be an integer/],
    [['--fail-rate', '1.5'], /--fail-rate must be a number from 0 to 1/],
    [['--stage', 'helo'], /--stage must be one of connect, banner/],
    [['--bogus'], /unknown option "--bogus"/],
    [['--reply', 'hello'], /must start with a 3-digit code/],
    [['--port'], /--port needs a value/],
    [['--fault', '{nope'], /--fault must be a JSON object/],
  ]
  for (const [argv, message] of cases) {
    let err = ''
    const code = await runFakeBackendCommand(argv, {
      stdout: { write: () => true },
      stderr: { write: (s) => (err += s) },
    })
    t.equal(code, 2, `${argv.join(' ')} → exit 2`)
    t.match(err, message)
  }
})

t.test('mxgate fake-backend in-process: starts, prints a line per message, stops on abort', async (t) => {
  const lines: string[] = []
  const ac = new AbortController()
  const io = {
    stdout: {
      write: (s: string) => {
        lines.push(...s.trim().split('\n'))
        return true
      },
    },
    stderr: { write: () => true },
    signal: ac.signal,
  }
  t.teardown(() => ac.abort())
  const running = runFakeBackendCommand(
    ['--port', '0', '--fail-rate', '0', '--reply', '451 4.3.0 x', '--seed', '7', '--accept-delay', '1'],
    io,
  )
  t.ok(await waitFor(() => lines.length > 0, 10_000), 'the command says it is listening')
  const started = JSON.parse(lines[0]!) as { event: string; port: number }
  t.equal(started.event, 'listening')
  const r = await sendMessage({
    host: '127.0.0.1',
    port: started.port,
    from: 'a@test',
    to: ['b@test'],
    message: makeTestMessage({ messageId: 'cli@test' }),
  })
  t.ok(r.ok)
  // The line is printed when the message is accepted, before the 250 goes out.
  t.match(JSON.parse(lines[1]!), { event: 'message', messageId: 'cli@test', from: 'a@test', to: ['b@test'] })
  ac.abort()
  t.equal(await running, 0)
})

t.test('mxgate fake-backend as a process: stops cleanly on SIGTERM', async (t) => {
  const root = path.resolve(__dirname, '..')
  const child = spawn(
    process.execPath,
    [
      '-r',
      '@isaacs/ts-node-temp-fork-for-pr-2009/register/transpile-only',
      '-e',
      "require('./src/cli/fake-backend-cmd').runFakeBackendCommand(process.argv.slice(1)).then((c) => process.exit(c))",
      '--',
      '--port',
      '0',
      '--drop-stage',
      'rcpt',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout.setEncoding('utf8')
  const [first] = (await Promise.race([
    (async () => {
      for await (const chunk of child.stdout) {
        out += chunk
        if (out.includes('\n')) return [out.split('\n')[0]]
      }
      return ['']
    })(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no startup line within 30 s')), 30_000)),
  ])) as string[]
  const started = JSON.parse(first!) as { port: number; faults: unknown[] }
  t.same(started.faults, [{ stage: 'rcpt', action: 'drop' }])
  const r = await sendMessage({ host: '127.0.0.1', port: started.port, from: 'a@t', to: ['b@t'], message: 'x' })
  t.equal(r.stage, 'rcpt', 'the fault from the command line applies')
  child.kill('SIGTERM')
  const [code] = (await once(child, 'exit')) as [number | null]
  t.equal(code, 0)
})

t.test('announces every MAIL transaction, a faulted one too', async (t) => {
  const backend = await startBackend(t, { faults: [{ stage: 'dot', action: 'reply', reply: '451 4.3.0 Try later' }] })
  const seen: string[] = []
  backend.on('transaction', (e) => seen.push(e.sessionId))
  t.equal((await send(backend)).code, 451, 'the first message is refused after its data')
  await backend.setFaults([])
  t.equal((await send(backend)).ok, true, 'the second is accepted')
  t.equal(seen.length, 2, 'one transaction per MAIL FROM')
})

t.test('announces every RCPT TO in a transaction, a faulted one too', async (t) => {
  const backend = await startBackend(t, {
    faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 No such user', rcpt: 'gone@example.test' }],
  })
  const seen: string[] = []
  backend.on('recipient', (e) => seen.push(e.rcpt))
  const r = await send(backend, { to: ['rcpt@example.test', 'gone@example.test'] })
  t.equal(r.ok, true, 'the message goes to the recipient that was taken')
  t.same(seen, ['rcpt@example.test', 'gone@example.test'], 'each RCPT TO, in order, the refused one too')
})
