// starttls = required through a real `mxgate start`: with tls_ca holding the backend's self-signed certificate the
// message is delivered over TLS; with another CA nothing reaches the backend, the message is spooled, and the log
// says the certificate did not verify and what to set.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { makeCert } from '../src/testing/certs'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { startMxgate } from './helpers/mxgate-process'

const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-backend-tls-e2e-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const backendCert = makeCert(dir, 'backend', 'mx1.internal.test')
const otherCert = makeCert(dir, 'other', 'mx1.internal.test')

async function run(t: Test, ca: string) {
  const backend = new FakeBackend({ id: 'mx1', tls: { cert: backendCert.cert, key: backendCert.key } })
  await backend.start()
  t.teardown(() => backend.stop())
  const conf = mkdtempSync(path.join(dir, 'conf-'))
  writeFileSync(
    path.join(conf, 'mxgate.ini'),
    `[backend_client]\nstarttls = required\ntls_ca = ${ca}\ntls_servername = mx1.internal.test\n[relay]\ndeadline = 3s\n`,
  )
  const m = await startMxgate({ backends: `mx1=127.0.0.1:${backend.port}`, args: ['--config', conf] })
  t.teardown(() => m.stop())
  const sent = await sendMessage({
    host: '127.0.0.1',
    port: m.port,
    from: 'alice@sender.test',
    to: ['bob@example.com'],
    message: makeTestMessage(),
    timeoutMs: 20_000,
  })
  return { backend, m, sent }
}

t.test('the right CA: verified and delivered over TLS', async (t) => {
  const { backend, sent } = await run(t, backendCert.certFile)
  t.equal(sent.code, 250)
  t.notMatch(sent.reply, /queued/)
  t.equal(backend.received.length, 1)
  t.equal(backend.received[0]?.tls, true)
})

t.test('the wrong CA: nothing reaches the backend, the message is spooled, the log names the cause', async (t) => {
  const { backend, m, sent } = await run(t, otherCert.certFile)
  t.match(sent.reply, /^250 .*queued/)
  t.equal(backend.received.length, 0)
  const line = m.logs.find((l) => JSON.stringify(l).includes('certificate not verified'))
  t.ok(line, 'a log line says the certificate did not verify')
  t.match(JSON.stringify(line), /against tls_ca and the name mx1\.internal\.test/)
})
