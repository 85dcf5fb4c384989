// Limits on what the internet may take from one node: connections in all and per address, messages per connection,
// slow DATA (slowloris), and message memory across connections. Raw sockets, a real mxgate, a fake backend.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { type MxgateProcess, startMxgate } from '../helpers/mxgate-process'
import { dialogue } from '../helpers/smtp-dialogue'

async function start(t: Test, ini: string): Promise<{ m: MxgateProcess; b: FakeBackend }> {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-limits-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}`, args: ['--config', dir] })
  t.teardown(() => m.stop())
  return { m, b }
}

async function gauge(m: MxgateProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${m.adminPort}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (line === undefined) throw new Error(`no ${name} in /metrics`)
  return Number(line.split(' ')[1])
}

/** Polls until `check` holds (bounded: 15 s). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

interface Client {
  socket: net.Socket
  /** Complete reply lines so far. */
  lines: string[]
  closed: Promise<void>
  /** Resolves with the first reply line matching `re`. */
  waitFor(re: RegExp): Promise<string>
}

function connect(port: number, localAddress = '127.0.0.1'): Client {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress })
  const lines: string[] = []
  let buf = ''
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = []
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1')
    for (let i = buf.indexOf('\r\n'); i !== -1; i = buf.indexOf('\r\n')) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 2)
      lines.push(line)
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(line)
        }
      }
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const waitFor = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find((l) => re.test(l))
      if (seen !== undefined) return resolve(seen)
      const timer = setTimeout(() => reject(new Error(`no reply matching ${re}; got ${JSON.stringify(lines)}`)), 15_000)
      waiters.push({
        re,
        resolve: (l) => {
          clearTimeout(timer)
          resolve(l)
        },
      })
    })
  return { socket, lines, closed, waitFor }
}

t.test('connections beyond the per-address and total limits get 421 4.7.0; a freed slot is usable again', async (t) => {
  const { m } = await start(t, '[smtp]\nmax_connections = 3\nmax_connections_per_ip = 2\n')
  const a = connect(m.port)
  const b = connect(m.port)
  await a.waitFor(/^220 /)
  await b.waitFor(/^220 /)
  const c = connect(m.port)
  t.equal(await c.waitFor(/^\d{3} /), '421 4.7.0 Too many connections from 127.0.0.1; try again later')
  await c.closed
  const d = connect(m.port, '127.0.0.2')
  await d.waitFor(/^220 /)
  const e = connect(m.port, '127.0.0.3')
  t.equal(await e.waitFor(/^\d{3} /), '421 4.7.0 Too many connections to this server; try again later')
  await e.closed
  t.equal(await gauge(m, 'mxgate_smtp_connections'), 3)
  t.equal(await gauge(m, 'mxgate_smtp_clients'), 2)
  a.socket.destroy()
  await until('a slot to be freed', async () => (await gauge(m, 'mxgate_smtp_connections')) === 2)
  const f = connect(m.port)
  await f.waitFor(/^220 /)
  t.pass('a new connection from 127.0.0.1 is greeted once one of its two closed')
  for (const x of [b, d, f]) x.socket.destroy()
  await until('every slot to be freed', async () => (await gauge(m, 'mxgate_smtp_connections')) === 0)
})

t.test('a connection over max_messages_per_connection gets 421 4.7.0 at the next MAIL', async (t) => {
  const { m, b } = await start(t, '[smtp]\nmax_messages_per_connection = 2\n')
  const msg = ['MAIL FROM:<s@remote.test>', 'RCPT TO:<a@example.com>', 'DATA', 'Subject: x\r\n\r\nhi\r\n.']
  const replies = await dialogue(m.port, ['EHLO client.test', ...msg, ...msg, 'MAIL FROM:<s@remote.test>'])
  t.match(replies[5], /^250 2\.0\.0 /)
  t.match(replies[9], /^250 2\.0\.0 /)
  t.equal(replies[10], '421 4.7.0 Too many messages in one connection (at most 2); reconnect')
  t.equal(b.received.length, 2)
})

t.test('slowloris: trickling DATA is cut off with 421 4.4.2 while a normal client is served', async (t) => {
  const { m, b } = await start(t, '[smtp]\ndata_timeout = 20s\nmin_data_rate = 2000\ndata_rate_grace = 1s\n')
  const slow = Array.from({ length: 20 }, () => connect(m.port))
  for (const c of slow) {
    await c.waitFor(/^220 /)
    c.socket.write('EHLO slow.test\r\n')
    await c.waitFor(/^250 /)
    c.socket.write('MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n')
    await c.waitFor(/^354 /)
  }
  // One byte every TRICKLE_MS from each: load shaping, not waiting (bounded: the loop stops when the connection
  // closes or after 200 bytes).
  const TRICKLE_MS = 100
  const trickles = slow.map(async (c) => {
    let open = true
    void c.closed.then(() => {
      open = false
    })
    for (let i = 0; i < 200 && open; i++) {
      c.socket.write('x')
      await new Promise((r) => setTimeout(r, TRICKLE_MS))
    }
  })
  // Meanwhile a well-behaved client sends five messages.
  for (let i = 0; i < 5; i++) {
    const r = await dialogue(m.port, [
      'EHLO good.test',
      'MAIL FROM:<s@remote.test>',
      'RCPT TO:<a@example.com>',
      'DATA',
      `Subject: good ${i}\r\n\r\nhi\r\n.`,
    ])
    t.match(r[5], /^250 2\.0\.0 /, `good message ${i} accepted`)
  }
  for (const c of slow) {
    t.match(await c.waitFor(/^421 /), /^421 4\.4\.2 DATA slower than 2000 bytes\/s; closing connection$/)
    await c.closed
  }
  await Promise.all(trickles)
  t.equal(b.received.length, 5, 'only the good messages reached the backend')
  await until('every slot and byte to be released', async () => {
    return (
      (await gauge(m, 'mxgate_smtp_connections')) === 0 && (await gauge(m, 'mxgate_smtp_message_memory_bytes')) === 0
    )
  })
})

t.test('message memory is bounded across connections: beyond it 451 4.3.1, and it is given back', async (t) => {
  const { m, b } = await start(t, '[smtp]\nmax_message_memory = 64k\n')
  const line = `${'y'.repeat(998)}\r\n`
  const body = `Subject: big\r\n\r\n${line.repeat(40)}`
  const a = connect(m.port)
  await a.waitFor(/^220 /)
  a.socket.write('EHLO a.test\r\n')
  await a.waitFor(/^250 /)
  a.socket.write('MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n')
  await a.waitFor(/^354 /)
  a.socket.write(body)
  await until('A to hold its 40 KB', async () => (await gauge(m, 'mxgate_smtp_message_memory_bytes')) >= 40_000)

  const first = await dialogue(m.port, [
    'EHLO b.test',
    'MAIL FROM:<s@remote.test>',
    'RCPT TO:<a@example.com>',
    'DATA',
    `${body}.`,
  ])
  t.equal(first[5], '451 4.3.1 Insufficient system resources for this message now; try again later')

  a.socket.write('.\r\n')
  t.match(await a.waitFor(/^250 2\.0\.0 /), /^250 /, 'the message that held the memory goes through')
  a.socket.destroy()
  await until('the memory to be given back', async () => (await gauge(m, 'mxgate_smtp_message_memory_bytes')) === 0)
  const again = await dialogue(m.port, [
    'EHLO b.test',
    'MAIL FROM:<s@remote.test>',
    'RCPT TO:<a@example.com>',
    'DATA',
    `${body}.`,
  ])
  t.match(again[5], /^250 2\.0\.0 /, 'the refused sender succeeds when it tries again')
  t.equal(b.received.length, 2)
})

t.test('a connection idle for smtp.idle_timeout gets 421 4.4.2 and is closed', async (t) => {
  const { m } = await start(t, '[smtp]\nidle_timeout = 1s\n')
  const c = connect(m.port)
  await c.waitFor(/^220 /)
  c.socket.write('EHLO idle.test\r\n')
  await c.waitFor(/^250 /)
  t.equal(await c.waitFor(/^421 /), '421 4.4.2 Idle for too long; closing connection')
  await c.closed
  await until('the slot to be freed', async () => (await gauge(m, 'mxgate_smtp_connections')) === 0)
})
