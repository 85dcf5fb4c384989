// Limits on what the internet may take from one node: connections in all and per address, messages per connection,
// slow DATA (slowloris), the whole DATA phase, and message memory across connections. Raw sockets, a real mxgate, a
// fake backend.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { type MxgateProcess, startMxgate } from '../helpers/mxgate-process'
import { dialogue } from '../helpers/smtp-dialogue'
import { type Client, command, connect, sendTimed } from './limits-client'

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A slow-loris client's pace: one byte this often (well under any rate floor; the pace is the attack). */
const TRICKLE_EVERY_MS = 100

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

t.test('a connection over max_messages_per_connection gets 421 4.7.0 at the next MAIL and is closed', async (t) => {
  const { m, b } = await start(t, '[smtp]\nmax_messages_per_connection = 2\n')
  const c = connect(m.port)
  t.match(await c.reply(), /^220 /)
  await command(c, 'EHLO client.test', 250)
  t.match((await sendTimed(c, 'one')).reply, /^250 2\.0\.0 /)
  t.match((await sendTimed(c, 'two')).reply, /^250 2\.0\.0 /)
  c.socket.write('MAIL FROM:<s@remote.test>\r\n')
  t.equal(await c.reply(), '421 4.7.0 Too many messages in one connection (at most 2); reconnect')
  await c.waitClosed()
  t.pass('mxgate closed the connection after its 421')
  t.equal(b.received.length, 2)
  await until('the slot to be freed', async () => (await gauge(m, 'mxgate_smtp_connections')) === 0)
})

t.test(
  'slowloris: past both connection limits the extras get 421 4.7.0, trickling DATA gets 421 4.4.2, and a client with a slot of its own is served as fast as before',
  async (t) => {
    // Seven slots, two per address. The well-behaved client takes its slot first, from 127.0.0.1; three attacking
    // addresses take the other six. The rate floor bites after a grace long enough for the good client's messages.
    const MAX = 7
    const PER_IP = 2
    const RATE = 2000
    const { m, b } = await start(
      t,
      `[smtp]\nmax_connections = ${MAX}\nmax_connections_per_ip = ${PER_IP}\n` +
        `data_timeout = 60s\nmin_data_rate = ${RATE}\ndata_rate_grace = 6s\n`,
    )
    const good = connect(m.port, '127.0.0.1')
    t.match(await good.reply(), /^220 /)
    await command(good, 'EHLO good.test', 250)
    // Baseline before any attacker: the same client, the same messages, an idle node.
    const baseline: number[] = []
    for (let i = 0; i < 7; i++) {
      const r = await sendTimed(good, `baseline ${i}`)
      if (!r.reply.startsWith('250 2.0.0 ')) t.fail(`baseline message ${i}: ${r.reply}`)
      baseline.push(r.ms)
    }
    const p50 = [...baseline].sort((x, y) => x - y)[3] as number

    // The connection gauge, sampled all through the attack (bounded: at most 2000 samples).
    const samples: number[] = []
    let sampling = true
    const sampler = (async () => {
      for (let i = 0; i < 2000 && sampling; i++) {
        samples.push(await gauge(m, 'mxgate_smtp_connections'))
        await sleep(25)
      }
    })()

    // Each attacking address opens one connection more than it may, one at a time so which limit answers is known:
    // the total is checked first, so the third address's extra meets the full node.
    const tricklers: Client[] = []
    const refused: [string, string][] = []
    for (const addr of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      for (let k = 0; k <= PER_IP; k++) {
        const c = connect(m.port, addr)
        const first = await c.reply()
        if (first.startsWith('220 ')) tricklers.push(c)
        else {
          refused.push([addr, first])
          await c.waitClosed()
        }
      }
    }
    const perIp = (ip: string) => `421 4.7.0 Too many connections from ${ip}; try again later`
    const FULL = '421 4.7.0 Too many connections to this server; try again later'
    t.same(
      refused,
      [
        ['127.0.0.2', perIp('127.0.0.2')],
        ['127.0.0.3', perIp('127.0.0.3')],
        ['127.0.0.4', FULL],
      ],
      'the extra from each address is refused: per address while the node had room, then for the node',
    )
    t.equal(tricklers.length, MAX - 1, "the attackers hold every slot but the good client's")
    t.equal(await gauge(m, 'mxgate_smtp_connections'), MAX)
    t.equal(await gauge(m, 'mxgate_smtp_clients'), 4)

    for (const c of tricklers) {
      await command(c, 'EHLO slow.test', 250)
      await command(c, 'MAIL FROM:<s@remote.test>', 250)
      await command(c, 'RCPT TO:<a@example.com>', 250)
    }
    await Promise.all(tricklers.map((c) => command(c, 'DATA', 354)))
    // One byte every 100 ms from each: load shaping, not waiting (bounded: stops at the close or after 300 bytes).
    const cutAt: number[] = []
    const trickles = tricklers.map(async (c) => {
      let open = true
      void c.closed.then(() => {
        open = false
      })
      void c.waitFor(/^421 /).then(
        () => cutAt.push(performance.now()),
        () => {},
      )
      for (let i = 0; i < 300 && open; i++) {
        c.socket.write('x')
        await sleep(TRICKLE_EVERY_MS)
      }
    })

    // While they trickle, more attackers knock, from a new address and from the ones already in (the good one's too).
    for (const addr of ['127.0.0.5', '127.0.0.2', '127.0.0.1']) {
      const c = connect(m.port, addr)
      t.equal(await c.reply(), FULL, `a new connection from ${addr} while the node is full`)
      await c.waitClosed()
    }

    // The good client sends its messages on the slot it holds.
    const N = 5
    const during: number[] = []
    for (let i = 0; i < N; i++) {
      const r = await sendTimed(good, `good ${i}`)
      t.match(r.reply, /^250 2\.0\.0 /, `good message ${i} accepted in ${r.ms.toFixed(0)} ms`)
      during.push(r.ms)
    }
    const goodDoneAt = performance.now()
    const worst = Math.max(...during)
    const bound = Math.max(10 * p50, 2000)
    t.ok(
      worst <= bound,
      `worst latency under attack ${worst.toFixed(0)} ms <= ${bound.toFixed(0)} ms (baseline p50 ${p50.toFixed(1)} ms)`,
    )

    for (const c of tricklers) {
      t.equal(await c.reply(), `421 4.4.2 DATA slower than ${RATE} bytes/s; closing connection`)
      await c.waitClosed()
    }
    await Promise.all(trickles)
    t.ok(
      cutAt.length === tricklers.length && cutAt.every((at) => at > goodDoneAt),
      'every good message was answered while all the attackers still held their slots',
    )
    await until("the attackers' slots to be freed", async () => (await gauge(m, 'mxgate_smtp_connections')) === 1)
    sampling = false
    await sampler
    t.ok(samples.length >= 10, `the connection gauge was sampled ${samples.length} times during the attack`)
    t.equal(Math.max(...samples), MAX, `the connection gauge reached the limit ${MAX} and never went above it`)

    await command(good, 'QUIT', 221)
    t.equal(b.received.length, baseline.length + N, 'only the good messages reached the backend')
    await until('every slot and byte to be released', async () => {
      return (
        (await gauge(m, 'mxgate_smtp_connections')) === 0 && (await gauge(m, 'mxgate_smtp_message_memory_bytes')) === 0
      )
    })
  },
)

t.test('DATA that goes on past smtp.data_timeout gets 421 4.4.2 and is closed, however fast it comes', async (t) => {
  const { m, b } = await start(t, '[smtp]\ndata_timeout = 2s\nmin_data_rate = 0\n')
  const c = connect(m.port)
  t.match(await c.reply(), /^220 /)
  await command(c, 'EHLO endless.test', 250)
  await command(c, 'MAIL FROM:<s@remote.test>', 250)
  await command(c, 'RCPT TO:<a@example.com>', 250)
  // The node's clock starts when it takes DATA, after this (and it reads Date.now(), whole milliseconds).
  const began = performance.now()
  await command(c, 'DATA', 354)
  // A 1000-byte line every 20 ms, never the final dot (bounded: stops at the close or after 1000 lines).
  let open = true
  void c.closed.then(() => {
    open = false
  })
  let sent = 0
  const writer = (async () => {
    const line = `${'f'.repeat(998)}\r\n`
    for (let i = 0; i < 1000 && open; i++) {
      c.socket.write(line)
      sent += line.length
      await sleep(20)
    }
  })()
  t.equal(await c.reply(), '421 4.4.2 DATA took longer than 2s; closing connection')
  const took = performance.now() - began
  const rate = (sent * 1000) / took
  await c.waitClosed()
  await writer
  t.ok(took >= 1990, `the 421 came ${took.toFixed(0)} ms after DATA, not before the deadline`)
  t.ok(rate > 5000, `the sender kept up ${rate.toFixed(0)} bytes/s: no rate floor would have stopped it`)
  t.equal(b.received.length, 0, 'nothing reached the backend')
  t.equal(b.counters.messages, 0)
  await until('the slot and the message memory to be released', async () => {
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
