// Inbound STARTTLS against a real mxgate: offered only with a certificate, a real TLS client gets an encrypted
// session that carries a message to the backend, plain text pipelined behind STARTTLS never runs inside TLS
// (CVE-2011-0411), a replaced certificate is served without a restart, and a broken pair stops start-up.
import { X509Certificate } from 'node:crypto'
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { makeCert, type TestCert } from '../../src/testing/certs'
import { FakeBackend } from '../../src/testing/fake-backend'
import { runMxgate, startMxgate } from '../helpers/mxgate-process'

const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-starttls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const certA = makeCert(dir, 'a', 'mx.test')
const certB = makeCert(dir, 'b', 'mx.test')
const certC = makeCert(dir, 'c', 'mx.test')

/** An SMTP client that reads whole replies and can move onto TLS mid-session, as RFC 3207 clients do. */
class Client {
  sock: net.Socket
  private buf = ''
  private lines: string[] = []
  private readonly replies: string[] = []
  private wake: (() => void) | null = null
  private closed = false

  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1')
    this.attach(this.sock)
  }

  private readonly onData = (d: Buffer) => {
    this.buf += d.toString('latin1')
    for (let i = this.buf.indexOf('\r\n'); i !== -1; i = this.buf.indexOf('\r\n')) {
      const line = this.buf.slice(0, i)
      this.buf = this.buf.slice(i + 2)
      this.lines.push(line)
      if (line[3] !== '-') {
        this.replies.push(this.lines.join('\n'))
        this.lines = []
      }
    }
    this.wake?.()
  }

  private attach(s: net.Socket): void {
    s.on('data', this.onData)
    s.on('error', () => {})
    s.on('close', () => {
      this.closed = true
      this.wake?.()
    })
  }

  send(text: string): void {
    this.sock.write(text)
  }

  async reply(ms = 10_000): Promise<string> {
    const until = Date.now() + ms
    while (this.replies.length === 0) {
      if (this.closed) throw new Error('connection closed while waiting for a reply')
      if (Date.now() > until) throw new Error('no reply in time')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, until - Date.now())
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = null
    }
    return this.replies.shift()!
  }

  async command(text: string): Promise<string> {
    this.send(`${text}\r\n`)
    return this.reply()
  }

  /** After the 220 to STARTTLS: the handshake, trusting `ca`. Anything still unread in plain text is an error. */
  async startTls(ca: Buffer): Promise<tls.TLSSocket> {
    if (this.buf !== '' || this.replies.length > 0) throw new Error(`plain text after 220: ${this.buf}${this.replies}`)
    this.sock.removeListener('data', this.onData)
    const secure = tls.connect({ socket: this.sock, ca, servername: 'mx.test' })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve)
      secure.once('error', reject)
    })
    this.sock = secure
    this.attach(secure)
    return secure
  }

  close(): void {
    this.sock.destroy()
  }
}

/** Connects, says EHLO, returns the client and the EHLO reply. */
async function greeted(port: number): Promise<{ c: Client; ehlo: string }> {
  const c = new Client(port)
  t.match(await c.reply(), /^220 /)
  return { c, ehlo: await c.command('EHLO sender.test') }
}

/** A fresh connection through STARTTLS; resolves the peer certificate's fingerprint. */
async function servedFingerprint(port: number, ca: Buffer[]): Promise<string> {
  const { c } = await greeted(port)
  try {
    if (!(await c.command('STARTTLS')).startsWith('220')) throw new Error('STARTTLS refused')
    const secure = await c.startTls(Buffer.concat(ca))
    return secure.getPeerCertificate().fingerprint256
  } finally {
    c.close()
  }
}

const fingerprint = (cert: TestCert) => new X509Certificate(cert.cert).fingerprint256

t.test('without a certificate STARTTLS is neither offered nor accepted', async (t) => {
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${backend.port}` })
  t.teardown(() => m.stop())
  const { c, ehlo } = await greeted(m.port)
  t.teardown(() => c.close())
  t.notMatch(ehlo, /STARTTLS/)
  t.match(await c.command('STARTTLS'), /^500 /)
})

t.test('with a certificate', async (t) => {
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  const m = await startMxgate({
    backends: `mx1=127.0.0.1:${backend.port}`,
    env: { MXGATE_TLS_CERT: certA.certFile, MXGATE_TLS_KEY: certA.keyFile },
  })
  t.teardown(() => m.stop())

  t.test('a real TLS client gets an encrypted session that carries a message to the backend', async (t) => {
    const { c, ehlo } = await greeted(m.port)
    t.teardown(() => c.close())
    t.match(ehlo, /\n250[- ]STARTTLS/)
    t.match(await c.command('STARTTLS'), /^220 2\.0\.0 /)
    const secure = await c.startTls(certA.cert)
    t.equal(secure.authorized, true, 'the certificate verifies against the configured one')
    t.match(secure.getProtocol(), /^TLSv1\.[23]$/)
    const again = await c.command('EHLO sender.test')
    t.match(again, /^250/)
    t.notMatch(again, /STARTTLS/, 'not offered inside TLS')
    t.match(await c.command('MAIL FROM:<alice@sender.test>'), /^250/)
    t.match(await c.command('RCPT TO:<bob@example.com>'), /^250/)
    t.match(await c.command('DATA'), /^354/)
    t.match(await c.command('Subject: over TLS\r\n\r\nsecret\r\n.'), /^250 /)
    t.equal(backend.received.length, 1)
    t.match(backend.received[0]?.raw.toString(), /with ESMTPS/, 'the Received header records the TLS session')
    t.match(backend.received[0]?.raw.toString(), /secret/)
  })

  t.test('plain text pipelined behind STARTTLS is discarded, not run inside TLS (CVE-2011-0411)', async (t) => {
    const before = backend.received.length
    const { c } = await greeted(m.port)
    t.teardown(() => c.close())
    const injected = 'MAIL FROM:<x@evil.test>\r\n'
    c.send(`STARTTLS\r\n${injected}`)
    t.match(await c.reply(), /^220 /)
    await c.startTls(certA.cert)
    t.match(await c.command('EHLO sender.test'), /^250/)
    // Had the injected MAIL run, this RCPT would be accepted into the attacker's transaction.
    t.match(await c.command('RCPT TO:<bob@example.com>'), /^503 /)
    t.match(await c.command('MAIL FROM:<alice@sender.test>'), /^250/, 'no transaction was open')
    t.ok(
      m.logs.some((l) => l.msg === 'discarded plain text pipelined behind STARTTLS' && l.bytes === injected.length),
      'the discarded bytes are logged',
    )
    t.equal(backend.received.length, before)
  })

  t.test('inside TLS the client starts over: MAIL needs a new EHLO', async (t) => {
    const { c } = await greeted(m.port)
    t.teardown(() => c.close())
    await c.command('STARTTLS')
    await c.startTls(certA.cert)
    t.match(await c.command('MAIL FROM:<alice@sender.test>'), /^503 /)
  })

  t.test('STARTTLS out of place is refused as Postfix does', async (t) => {
    const { c } = await greeted(m.port)
    t.teardown(() => c.close())
    t.match(await c.command('STARTTLS now'), /^501 5\.5\.4 Syntax: STARTTLS/)
    t.match(await c.command('MAIL FROM:<alice@sender.test>'), /^250/)
    t.match(await c.command('STARTTLS'), /^503 5\.5\.1 Error: MAIL transaction in progress/)
    t.match(await c.command('RSET'), /^250/)
    t.match(await c.command('STARTTLS'), /^220 /)
    await c.startTls(certA.cert)
    t.match(await c.command('EHLO sender.test'), /^250/)
    t.match(await c.command('STARTTLS'), /^554 5\.5\.1 Error: TLS already active/)
  })
})

t.test(
  'min_version from a config file: an older client fails the handshake, the session is not left open',
  async (t) => {
    const backend = new FakeBackend({ id: 'mx1' })
    await backend.start()
    t.teardown(() => backend.stop())
    const conf = mkdtempSync(path.join(dir, 'conf-'))
    // Relative paths: from the directory of the file that names them.
    writeFileSync(
      path.join(conf, 'mxgate.ini'),
      `[tls]\ncert = ../${path.basename(certA.certFile)}\nkey = ../${path.basename(certA.keyFile)}\nmin_version = TLSv1.3\n`,
    )
    const m = await startMxgate({ backends: `mx1=127.0.0.1:${backend.port}`, args: ['--config', conf] })
    t.teardown(() => m.stop())
    const { c } = await greeted(m.port)
    t.teardown(() => c.close())
    t.match(await c.command('STARTTLS'), /^220 /)
    c.sock.removeAllListeners('data')
    const old = tls.connect({ socket: c.sock, ca: certA.cert, servername: 'mx.test', maxVersion: 'TLSv1.2' })
    const err = await new Promise<Error>((resolve) => old.once('error', resolve))
    t.match(err.message, /protocol version|alert/i, 'TLSv1.2 is refused')
    // A TLSv1.3 client on the same listener is served.
    t.match(await servedFingerprint(m.port, [certA.cert]), fingerprint(certA))
  },
)

t.test('a client that abandons STARTTLS or sends garbage leaves the listener serving', async (t) => {
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  const m = await startMxgate({
    backends: `mx1=127.0.0.1:${backend.port}`,
    env: { MXGATE_TLS_CERT: certA.certFile, MXGATE_TLS_KEY: certA.keyFile },
  })
  t.teardown(() => m.stop())
  const gone = await greeted(m.port)
  t.match(await gone.c.command('STARTTLS'), /^220 /)
  gone.c.close()
  const garbage = await greeted(m.port)
  t.match(await garbage.c.command('STARTTLS'), /^220 /)
  garbage.c.send('MAIL FROM:<x@evil.test>\r\n')
  await new Promise<void>((resolve) => garbage.c.sock.once('close', () => resolve()))
  t.pass('garbage instead of a handshake: the connection is closed')
  t.equal(await servedFingerprint(m.port, [certA.cert]), fingerprint(certA), 'the next client is served')
  t.equal(m.proc.exitCode, null, 'mxgate is still running')
  t.equal(backend.received.length, 0)
})

t.test('a replaced certificate is served from the next STARTTLS on; a half-replaced pair is not', async (t) => {
  const live = { cert: path.join(dir, 'live.cert.pem'), key: path.join(dir, 'live.key.pem') }
  copyFileSync(certA.certFile, live.cert)
  copyFileSync(certA.keyFile, live.key)
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  const m = await startMxgate({
    backends: `mx1=127.0.0.1:${backend.port}`,
    env: { MXGATE_TLS_CERT: live.cert, MXGATE_TLS_KEY: live.key },
  })
  t.teardown(() => m.stop())
  const all = [certA.cert, certB.cert, certC.cert]
  t.equal(await servedFingerprint(m.port, all), fingerprint(certA))

  // Rotate as a deployment tool would: new files beside the old ones, renamed into place.
  copyFileSync(certB.keyFile, `${live.key}.new`)
  copyFileSync(certB.certFile, `${live.cert}.new`)
  renameSync(`${live.key}.new`, live.key)
  renameSync(`${live.cert}.new`, live.cert)
  // The files are looked at no more than once a second: poll rather than sleep.
  let served = ''
  for (const until = Date.now() + 10_000; Date.now() < until && served !== fingerprint(certB); ) {
    served = await servedFingerprint(m.port, all)
  }
  t.equal(served, fingerprint(certB), 'the new certificate is served without a restart')

  // A certificate whose key has not arrived yet: the working pair stays in use and the operator hears why.
  copyFileSync(certC.certFile, `${live.cert}.new`)
  renameSync(`${live.cert}.new`, live.cert)
  const refused = () =>
    m.logs.some((l) => l.msg === 'inbound TLS certificate not reloaded; still using the previous one')
  for (const until = Date.now() + 10_000; Date.now() < until && !refused(); ) {
    t.equal(await servedFingerprint(m.port, all), fingerprint(certB))
  }
  t.ok(refused(), 'the mismatched pair is logged')
  t.equal(await servedFingerprint(m.port, all), fingerprint(certB), 'still the last good pair')
})

t.test('a broken certificate configuration stops start-up with exit 2 and one clear line', async (t) => {
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'key of another certificate',
      { MXGATE_TLS_CERT: certA.certFile, MXGATE_TLS_KEY: certB.keyFile },
      /^mxgate: configuration error: env MXGATE_TLS_KEY: tls\.key: \S+b\.key\.pem: does not match the certificate in \S+a\.cert\.pem; set tls\.key to the key that certificate was issued for/,
    ],
    [
      'missing certificate file',
      { MXGATE_TLS_CERT: path.join(dir, 'none.pem'), MXGATE_TLS_KEY: certA.keyFile },
      /^mxgate: configuration error: env MXGATE_TLS_CERT: tls\.cert: \S+none\.pem: cannot read it \(no such file\); check the path/,
    ],
    [
      'a key file given as the certificate',
      { MXGATE_TLS_CERT: certA.keyFile, MXGATE_TLS_KEY: certA.keyFile },
      /^mxgate: configuration error: env MXGATE_TLS_CERT: tls\.cert: \S+a\.key\.pem: holds no PEM certificate/,
    ],
    [
      'a certificate without a key',
      { MXGATE_TLS_CERT: certA.certFile },
      /^mxgate: configuration error: env MXGATE_TLS_CERT: tls\.key: tls\.cert is set but tls\.key is not; STARTTLS needs both/,
    ],
  ]
  for (const [name, env, line] of cases) {
    const r = await runMxgate(['start'], env)
    t.equal(r.code, 2, `${name}: exit 2`)
    t.match(r.stderr, line, `${name}: the line names the setting, the file and the fix`)
  }
})
