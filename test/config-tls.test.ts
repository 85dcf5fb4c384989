// TLS settings: the inbound certificate pair and the backend CA are checked at load, with the exact error text;
// relative paths come from the file that names them; tls_reject_unauthorized gives way with the fix.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config/load'
import { makeCert } from '../src/testing/certs'

const certs = mkdtempSync(path.join(os.tmpdir(), 'mxgate-cfg-tls-'))
t.teardown(() => rmSync(certs, { recursive: true, force: true }))
const a = makeCert(certs, 'a', 'mx.test')
const b = makeCert(certs, 'b', 'mx.test')

const MINIMAL = '[smtp]\ndomains = example.com\n[backend.mx1]\naddress = 127.0.0.1:2601\n'

function load(t: Test, ini: string) {
  const dir = mkdtempSync(path.join(certs, 'conf-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), MINIMAL + ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return { dir, file: path.join(dir, 'mxgate.ini'), load: () => loadConfig({ baseDir: dir, env: {} }) }
}

function loadError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('no [tls] means no STARTTLS, TLSv1.2 at least, and backends verified only when required', async (t) => {
  const cfg = load(t, '').load()
  t.same(cfg.tls, { cert: null, key: null, minVersion: 'TLSv1.2' })
  t.equal(cfg.client.tlsCa, null)
  t.equal(cfg.client.tlsServername, null)
})

t.test('a matching pair loads; relative paths are taken from the config file directory', async (t) => {
  const c = load(t, `[tls]\ncert = ../a.cert.pem\nkey = ${a.keyFile}\nmin_version = tlsv1.3\n`)
  const cfg = c.load()
  t.equal(cfg.tls.cert, a.certFile)
  t.equal(cfg.tls.key, a.keyFile)
  t.equal(cfg.tls.minVersion, 'TLSv1.3')
})

t.test('the errors name the place, the setting, the file and the fix', async (t) => {
  const mismatch = load(t, `[tls]\ncert = ${a.certFile}\nkey = ${b.keyFile}\n`)
  t.equal(
    loadError(mismatch.load),
    `${mismatch.file}:7: tls.key: ${b.keyFile}: does not match the certificate in ${a.certFile}; set tls.key to the key that certificate was issued for (compare \`openssl x509 -noout -pubkey -in CERT\` with \`openssl pkey -pubout -in KEY\`)`,
  )
  const missing = load(t, `[tls]\ncert = /nonexistent/cert.pem\nkey = ${a.keyFile}\n`)
  t.equal(
    loadError(missing.load),
    `${missing.file}:6: tls.cert: /nonexistent/cert.pem: cannot read it (no such file); check the path and that mxgate's user may read it`,
  )
  const garbage = path.join(certs, 'garbage.pem')
  writeFileSync(garbage, 'not a key\n')
  const badKey = load(t, `[tls]\ncert = ${a.certFile}\nkey = ${garbage}\n`)
  t.match(loadError(badKey.load), `${badKey.file}:7: tls.key: ${garbage}: holds no usable PEM private key (`)
  const half = load(t, `[tls]\nkey = ${a.keyFile}\n`)
  t.equal(
    loadError(half.load),
    `${half.file}:6: tls.cert: tls.key is set but tls.cert is not; STARTTLS needs both (or neither, to offer no STARTTLS)`,
  )
  const version = load(t, '[tls]\nmin_version = SSLv3\n')
  t.equal(
    loadError(version.load),
    `${version.file}:6: tls.min_version: "SSLv3" must be TLSv1.2 or TLSv1.3 (Node's OpenSSL refuses older versions at its default security level)`,
  )
  const ca = load(t, `[backend_client]\ntls_ca = ${a.keyFile}\n`)
  t.equal(
    loadError(ca.load),
    `${ca.file}:6: backend_client.tls_ca: ${a.keyFile}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
  )
  const name = load(t, '[backend_client]\ntls_servername = not a name\n')
  t.match(loadError(name.load), `${name.file}:6: backend_client.tls_servername: "not a name" is not a host name`)
})

t.test('tls_reject_unauthorized is refused with what replaces it', async (t) => {
  const c = load(t, '[backend_client]\ntls_reject_unauthorized = false\n')
  t.equal(
    loadError(c.load),
    `${c.file}:6: backend_client.tls_reject_unauthorized: removed; certificate checks now follow starttls: required encrypts and verifies the certificate (against tls_ca, or the system CAs, and the backend's name), opportunistic encrypts without verifying. Delete this line; with self-signed backend certificates and starttls = required, set tls_ca to a file holding them`,
  )
})

t.test('a backend may name the certificate name it is checked against', async (t) => {
  const c = load(t, '[backend.mx2]\naddress = 127.0.0.1:2602\nservername = MX2.Internal.Test.\n')
  t.equal(c.load().backends.find((x) => x.id === 'mx2')?.servername, 'mx2.internal.test')
  const bad = load(t, '[backend.mx2]\naddress = 127.0.0.1:2602\nservername = -bad-\n')
  t.match(loadError(bad.load), /backend\.mx2\.servername: "-bad-" is not a host name/)
})
