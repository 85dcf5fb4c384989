// Throwaway self-signed certificates for tests and the demo, made with the openssl command line in a directory the
// caller owns (and removes). Self-signed, so each one is also the CA a client trusts it by.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'

export interface TestCert {
  certFile: string
  keyFile: string
  cert: Buffer
  key: Buffer
}

/**
 * A P-256 certificate for `name` (also as a DNS subject alternative name, plus 127.0.0.1), valid for `days`.
 * Files are written as DIR/PREFIX.cert.pem and DIR/PREFIX.key.pem.
 */
export function makeCert(dir: string, prefix: string, name: string, days = 2): TestCert {
  const certFile = path.join(dir, `${prefix}.cert.pem`)
  const keyFile = path.join(dir, `${prefix}.key.pem`)
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      String(days),
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=DNS:${name},IP:127.0.0.1`,
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  )
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) }
}
