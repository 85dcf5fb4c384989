// TLS to backends: starttls = required encrypts and verifies against tls_ca and the backend's name, opportunistic
// encrypts without verifying (RFC 7435). A fake backend offers STARTTLS with a throwaway self-signed certificate.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import t, { type Test } from 'tap'
import { BackendClient, type ClientOptions } from '../src/backend/client'
import { loadConfig } from '../src/config/load'
import { clientOptions } from '../src/engine'
import { classifyAttempt } from '../src/relay/classify'
import { makeCert } from '../src/testing/certs'
import { FakeBackend } from '../src/testing/fake-backend'

const silent = pino({ level: 'silent' })
const env = { from: 'sender@example.org', to: ['rcpt@example.com'] }
const BODY = Buffer.from('Subject: hi\r\n\r\nhello\r\n')
const soon = () => Date.now() + 5000

const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-backend-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
// The backend's own self-signed certificate is the CA that trusts it; another one is the wrong CA.
const backendCert = makeCert(dir, 'backend', 'mx1.internal.test')
const otherCert = makeCert(dir, 'other', 'other.internal.test')

function options(over: Partial<ClientOptions>): ClientOptions {
  return {
    heloName: 'mxgate.test',
    timeouts: {
      connect: 2000,
      banner: 2000,
      ehlo: 2000,
      mail: 2000,
      rcpt: 2000,
      data: 2000,
      dot: 5000,
      rset: 2000,
      quit: 1000,
    },
    maxSessions: 2,
    sessionWaitMs: 5000,
    maxMessagesPerSession: 10,
    idleTimeoutMs: 30_000,
    starttls: 'opportunistic',
    tls: { rejectUnauthorized: false },
    ...over,
  }
}

async function setup(t: Test, over: Partial<ClientOptions>) {
  const backend = new FakeBackend({ id: 'mx1', tls: { cert: backendCert.cert, key: backendCert.key } })
  await backend.start()
  const client = new BackendClient({ id: 'mx1', host: '127.0.0.1', port: backend.port }, options(over), silent)
  t.teardown(async () => {
    await client.close()
    await backend.stop()
  })
  return { backend, client }
}

t.test('required with the right CA and name: verified, delivered over TLS', async (t) => {
  const { backend, client } = await setup(t, {
    starttls: 'required',
    tls: { rejectUnauthorized: true, ca: backendCert.cert, servername: 'mx1.internal.test' },
  })
  const attempt = await client.deliver(env, BODY, soon())
  t.ok(attempt.ok, attempt.failure?.message ?? 'delivered')
  t.equal(backend.received.length, 1)
  t.equal(backend.received[0]?.tls, true, 'the message came over the encrypted session')
})

t.test('required with the wrong CA: a backend fault at starttls naming the cause and the fix', async (t) => {
  const { backend, client } = await setup(t, {
    starttls: 'required',
    tls: { rejectUnauthorized: true, ca: otherCert.cert, servername: 'mx1.internal.test' },
  })
  const attempt = await client.deliver(env, BODY, soon())
  t.notOk(attempt.ok)
  t.match(attempt.failure, {
    stage: 'starttls',
    kind: 'tls',
    message:
      /^starttls: certificate not verified \(DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate\) against tls_ca and the name mx1\.internal\.test; .*set tls_ca to the CA that signed it/,
  })
  t.match(classifyAttempt(attempt), { kind: 'backend', reason: /certificate not verified/ })
  t.equal(backend.received.length, 0, 'nothing was sent to a backend that did not verify')
})

t.test('required with the right CA but another name: a backend fault naming the name checked', async (t) => {
  const { client } = await setup(t, {
    starttls: 'required',
    tls: { rejectUnauthorized: true, ca: backendCert.cert, servername: 'mx9.internal.test' },
  })
  const attempt = await client.deliver(env, BODY, soon())
  t.match(attempt.failure, {
    stage: 'starttls',
    kind: 'tls',
    message:
      /certificate not verified \(ERR_TLS_CERT_ALTNAME_INVALID: .*\) against tls_ca and the name mx9\.internal\.test; .*tls_servername/,
  })
})

t.test('required without tls_ca checks against the system CAs, and says so', async (t) => {
  const { client } = await setup(t, { starttls: 'required', tls: { rejectUnauthorized: true } })
  const attempt = await client.deliver(env, BODY, soon())
  t.match(attempt.failure, { stage: 'starttls', kind: 'tls', message: /against the system CAs \(no tls_ca set\)/ })
})

t.test('opportunistic encrypts a self-signed backend without verifying and delivers', async (t) => {
  const { backend, client } = await setup(t, { starttls: 'opportunistic', tls: { rejectUnauthorized: false } })
  const attempt = await client.deliver(env, BODY, soon())
  t.ok(attempt.ok, attempt.failure?.message ?? 'delivered')
  t.equal(backend.received[0]?.tls, true)
})

t.test('the config ties verification to starttls and passes the CA and names on', async (t) => {
  const confDir = mkdtempSync(path.join(dir, 'conf-'))
  const ini = (extra: string) => {
    writeFileSync(
      path.join(confDir, 'mxgate.ini'),
      `[smtp]\ndomains = example.com\n[backend.mx1]\naddress = 127.0.0.1:2601\nservername = mx1.internal.test\n[backend_client]\n${extra}`,
    )
    return loadConfig({ baseDir: confDir })
  }
  const required = ini(
    `starttls = required\ntls_ca = ${path.relative(confDir, backendCert.certFile)}\ntls_servername = pool.internal.test\n`,
  )
  t.equal(required.client.tlsCa, backendCert.certFile, 'a relative tls_ca is taken from the config file directory')
  t.equal(required.backends[0]?.servername, 'mx1.internal.test')
  const opts = clientOptions(required)
  t.equal(opts.tls.rejectUnauthorized, true)
  t.equal(opts.tls.servername, 'pool.internal.test')
  t.same(opts.tls.ca, backendCert.cert)
  t.equal(clientOptions(ini('starttls = opportunistic\n')).tls.rejectUnauthorized, false)
})
