// The PROXY protocol through the real `mxgate start`, with raw v1 lines and v2 headers over a socket: honoured from
// the trusted load balancer only (127.0.0.2 here), refused from anyone else (127.0.0.1); the real client address is
// the one limits count and the Received header names; one header per connection.
import t from 'tap'
import { V2_SIGNATURE } from '../src/inbound/proxy-v2'
import { FakeBackend } from '../src/testing/fake-backend'
import { startMxgate } from './helpers/mxgate-process'
import { SessionClosedError, SmtpSession } from './helpers/smtp-session'
import { configDir, eventually } from './helpers/spool-e2e'

const BALANCER = '127.0.0.2'
const STRANGER = '127.0.0.1'
/** Between the two halves of a split header, so they arrive in separate reads (load shaping, not a wait). */
const SPLIT_PAUSE_MS = 20

/** A v2 header for a TCP over IPv4 connection (PROXY command), or the balancer's own check (LOCAL). */
function v2(src: string, srcPort: number, cmd: 'proxy' | 'local' = 'proxy'): Buffer {
  const addr = Buffer.alloc(12)
  Buffer.from(src.split('.').map(Number)).copy(addr, 0)
  Buffer.from([127, 0, 0, 1]).copy(addr, 4)
  addr.writeUInt16BE(srcPort, 8)
  addr.writeUInt16BE(25, 10)
  const head = Buffer.from([cmd === 'proxy' ? 0x21 : 0x20, 0x11, 0, 12])
  return Buffer.concat([V2_SIGNATURE, head, addr])
}

t.test('PROXY protocol from the load balancer', async (t) => {
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port}`,
    args: ['--config', configDir(t, '[smtp]\nmax_connections_per_ip = 1\n')],
    env: { MXGATE_PROXY_HOSTS: `${BALANCER}/32` },
  })
  t.teardown(() => node.stop())
  const open = (preamble: Buffer | string | undefined, from = BALANCER) =>
    SmtpSession.open(node.port, { ...(preamble === undefined ? {} : { preamble }), from })
  const proxyLine = (ip: string, port = 40000) => `PROXY TCP4 ${ip} 127.0.0.1 ${port} 25\r\n`

  t.test('v1 from the balancer: the real client address is in the Received header', async (t) => {
    const { session, banner } = await open(proxyLine('192.0.2.10'))
    t.match(banner, /^220 /)
    await session.command('EHLO client.proxy.test')
    t.match(await session.command('MAIL FROM:<a@remote.test>'), /^250/)
    t.match(await session.command('RCPT TO:<u@example.com>'), /^250/)
    t.match(await session.command('DATA'), /^354/)
    session.write('Message-ID: <v1@proxy.test>\r\nSubject: v1\r\n\r\nbody\r\n.\r\n')
    t.match(await session.next(), /^250/)
    session.end()
    const got = mx1.received.find((m) => m.messageId === 'v1@proxy.test')
    t.match(got?.raw.toString('latin1').split('\r\n')[0], /^Received: from client\.proxy\.test \(.*192\.0\.2\.10/)
  })

  t.test('limits count the real client address, not the balancer', async (t) => {
    const first = await open(proxyLine('192.0.2.20', 40001))
    t.match(first.banner, /^220 /)
    const second = await open(proxyLine('192.0.2.20', 40002))
    t.equal(second.banner, '421 4.7.0 Too many connections from 192.0.2.20; try again later')
    const other = await open(proxyLine('192.0.2.21', 40003))
    t.match(other.banner, /^220 /, 'another client behind the same balancer is served')
    for (const s of [first, second, other]) s.session.end()
  })

  t.test('a PROXY command after the greeting is refused, not believed', async (t) => {
    const { session } = await open(proxyLine('192.0.2.30'))
    t.equal(await session.command(proxyLine('198.51.100.1').trim()), '421 PROXY not allowed from 192.0.2.30')
    await t.rejects(session.next(), SessionClosedError, 'and the connection is closed')
  })

  t.test('a PROXY header from anyone else is refused', async (t) => {
    const v1 = await open(proxyLine('192.0.2.40'), STRANGER)
    t.match(v1.banner, /^220 /, 'a stranger is greeted as itself')
    t.equal(await v1.session.next(), `421 PROXY not allowed from ${STRANGER}`)
    const v2h = await open(v2('192.0.2.41', 40004), STRANGER)
    t.equal(await v2h.session.next(), `421 PROXY not allowed from ${STRANGER}`)
    await t.rejects(v2h.session.next(), SessionClosedError)
  })

  t.test('v2 from the balancer, even split across writes', async (t) => {
    const header = v2('192.0.2.50', 40005)
    const session = await SmtpSession.connect(node.port, BALANCER)
    session.write(header.subarray(0, 10))
    await new Promise((r) => setTimeout(r, SPLIT_PAUSE_MS))
    session.write(header.subarray(10))
    t.match(await session.next(), /^220 /, 'greeted once the whole header arrived')
    t.match(await deliver(session, 'v2@proxy.test'), /^Received: from client\.proxy\.test \(.*192\.0\.2\.50/)
  })

  t.test('v2 LOCAL and v1 UNKNOWN (health checks) keep the balancer’s own address', async (t) => {
    const local = await open(v2('192.0.2.60', 40006, 'local'))
    t.match(local.banner, /^220 /)
    t.match(await deliver(local.session, 'local@proxy.test'), /^Received: from client\.proxy\.test \(.*127\.0\.0\.2/)
    const unknown = await open('PROXY UNKNOWN\r\n')
    t.match(unknown.banner, /^220 /)
    t.match(await deliver(unknown.session, 'unknown@proxy.test'), /^Received: .*127\.0\.0\.2/)
  })

  t.test('a malformed header from the balancer is refused', async (t) => {
    const { banner, session } = await open('PROXY TCP4 999.0.2.1 127.0.0.1 1 25\r\n')
    t.equal(banner, '421 Invalid PROXY format')
    await t.rejects(session.next(), SessionClosedError)
  })

  /** Sends one message over the session; resolves the first line of the copy the backend received. */
  async function deliver(session: SmtpSession, id: string): Promise<string> {
    await session.command('EHLO client.proxy.test')
    await session.command('MAIL FROM:<a@remote.test>')
    await session.command('RCPT TO:<u@example.com>')
    await session.command('DATA')
    session.write(`Message-ID: <${id}>\r\nSubject: x\r\n\r\nbody\r\n.\r\n`)
    const reply = await session.next()
    session.end()
    if (!reply.startsWith('250')) return reply
    await eventually(() => mx1.received.some((m) => m.messageId === id), 5_000)
    return (
      mx1.received
        .find((m) => m.messageId === id)
        ?.raw.toString('latin1')
        .split('\r\n')[0] ?? ''
    )
  }
})
