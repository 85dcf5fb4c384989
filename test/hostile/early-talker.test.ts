// Early talkers: a client that speaks before the greeting, or pipelines without being offered PIPELINING, is a
// spam engine that does not wait for replies. It gets 554 and the connection is closed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../../src/testing/fake-backend'
import { startMxgate } from '../helpers/mxgate-process'
import { dialogue } from '../helpers/smtp-dialogue'

/** Connects, writes `first` once the socket connects (or once the greeting arrived), and collects every reply line
 * until the server closes or 10 s pass. */
async function talk(
  port: number,
  first: string,
  when: 'connect' | 'greeting',
): Promise<{ lines: string[]; closed: boolean }> {
  const s = net.connect(port, '127.0.0.1')
  let buf = ''
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(false), 10_000)
    const finish = (closed: boolean) => {
      clearTimeout(timer)
      s.destroy()
      resolve({ lines: buf.split('\r\n').filter((l) => l !== ''), closed })
    }
    if (when === 'connect') s.once('connect', () => s.write(first))
    s.on('data', (d: Buffer) => {
      const had = buf
      buf += d.toString('latin1')
      if (when === 'greeting' && had === '' && buf.startsWith('220')) s.write(first)
    })
    s.on('close', () => finish(true))
    s.on('error', () => finish(true))
  })
}

t.test('with a greet pause, a client that talks before the greeting gets 554 instead of it', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-early-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'mxgate.ini'), '[smtp]\ngreet_pause = 1s\n')
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}`, args: ['--config', dir] })
  t.teardown(() => m.stop())

  const early = await talk(m.port, 'EHLO spammer.test\r\nMAIL FROM:<s@remote.test>\r\n', 'connect')
  t.ok(early.closed, 'the connection was closed')
  t.equal(early.lines.length, 1, `one reply only: ${JSON.stringify(early.lines)}`)
  t.match(early.lines[0], /^554 5\.5\.1 Protocol error: talking before the greeting/)

  const polite = await dialogue(m.port, ['EHLO client.test', 'MAIL FROM:<s@remote.test>', 'RCPT TO:<a@example.com>'])
  t.match(polite[0], /^220 /, 'a client that waits is greeted')
  t.match(polite[3], /^250 /)
})

t.test('a client that pipelines after HELO (no PIPELINING offered) gets 554 and is cut off', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const r = await talk(
    m.port,
    'HELO spammer.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n',
    'greeting',
  )
  t.ok(r.closed, 'the connection was closed')
  t.match(r.lines[0], /^220 /)
  t.match(r.lines.at(-1), /^554 5\.5\.1 Protocol error: .*pipelined command without PIPELINING; closing$/)
  t.notOk(
    r.lines.some((l) => l.startsWith('354')),
    'DATA was never accepted',
  )
  t.equal(b.counters.messages, 0)
})

t.test('a client that pipelines behind EHLO, before seeing PIPELINING offered, gets 554 and is cut off', async (t) => {
  const b = new FakeBackend({ id: 'mx1' })
  await b.start()
  t.teardown(() => b.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${b.port}` })
  t.teardown(() => m.stop())
  const r = await talk(m.port, 'EHLO spammer.test\r\nMAIL FROM:<s@remote.test>\r\n', 'greeting')
  t.ok(r.closed, 'the connection was closed')
  t.same(r.lines.slice(1), [
    '554 5.5.1 Protocol error: talking before the greeting, or a pipelined command without PIPELINING; closing',
  ])
  t.equal(b.counters.messages, 0)
})
