// Inbound STARTTLS across reloads: a reload that names another certificate pair serves it from the next handshake,
// and one that adds a pair to a node without TLS starts offering STARTTLS. (Rotating the files under the same names
// needs no reload: test/hostile/starttls.test.ts.)
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { makeCert, type TestCert } from '../src/testing/certs'
import { FakeBackend } from '../src/testing/fake-backend'
import { startMxgate, waitForLogs } from './helpers/mxgate-process'

const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-reload-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const certA = makeCert(dir, 'a', 'mx.test')
const certB = makeCert(dir, 'b', 'mx.test')
const ini = path.join(dir, 'mxgate.ini')
const fingerprint = (c: TestCert) => new X509Certificate(c.cert).fingerprint256

/** Reads one whole SMTP reply (multi-line ones end with "NNN "). */
function reply(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const onData = (d: Buffer) => {
      buf += d.toString('latin1')
      if (/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(buf)) {
        s.off('data', onData)
        resolve(buf)
      }
    }
    s.on('data', onData)
    s.once('error', reject)
  })
}

/** EHLO reply, and with `ca` the certificate a STARTTLS handshake is served. */
async function probe(port: number, ca: Buffer | null): Promise<{ ehlo: string; served: string | null }> {
  const s = net.connect(port, '127.0.0.1')
  try {
    await reply(s)
    s.write('EHLO sender.test\r\n')
    const ehlo = await reply(s)
    if (ca === null) return { ehlo, served: null }
    s.write('STARTTLS\r\n')
    t.match(await reply(s), /^220 /)
    const secure = tls.connect({ socket: s, ca, servername: 'mx.test' })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve)
      secure.once('error', reject)
    })
    const served = secure.getPeerCertificate().fingerprint256
    secure.destroy()
    return { ehlo, served }
  } finally {
    s.destroy()
  }
}

async function reloaded(m: Awaited<ReturnType<typeof startMxgate>>, count: number): Promise<void> {
  m.proc.kill('SIGHUP')
  const done = (l: Record<string, unknown>[]) => l.filter((x) => x.msg === 'configuration reloaded').length >= count
  await waitForLogs(m, done, `reload #${count}`)
}

t.test('a reload turns STARTTLS on, then moves it to another certificate pair', async (t) => {
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  writeFileSync(ini, '')
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${backend.port}`, args: ['--config', dir] })
  t.teardown(() => m.stop())
  t.notMatch((await probe(m.port, null)).ehlo, /STARTTLS/, 'no certificate, no STARTTLS')

  writeFileSync(ini, `[tls]\ncert = ${certA.certFile}\nkey = ${certA.keyFile}\n`)
  await reloaded(m, 1)
  const a = await probe(m.port, certA.cert)
  t.match(a.ehlo, /STARTTLS/, 'offered after the reload')
  t.equal(a.served, fingerprint(certA))

  writeFileSync(ini, `[tls]\ncert = ${certB.certFile}\nkey = ${certB.keyFile}\n`)
  await reloaded(m, 2)
  t.equal((await probe(m.port, certB.cert)).served, fingerprint(certB), 'the next handshake gets the new pair')
  const line = m.logs.filter((x) => x.msg === 'configuration reloaded').at(-1)!
  t.same(line.changed, ['tls.cert', 'tls.key'])
})
