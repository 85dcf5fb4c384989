// Reads and checks TLS files: the listener's certificate and key (at config load, so a bad pair stops start-up, and
// again when the listener reloads them) and the CA file backends are verified against. Builds no TLS context.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'

/** A TLS file is unusable; `key` is the setting that names it (tls.cert, tls.key, backend_client.tls_ca). */
export class TlsFileError extends Error {
  readonly code = 'ETLSFILE'
  constructor(
    readonly key: string,
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`)
    this.name = 'TlsFileError'
  }
}

export interface KeyPair {
  /** The certificate chain, leaf first, as PEM. */
  cert: Buffer
  key: Buffer
  /** The leaf certificate's subject and expiry, for log lines. */
  subject: string
  notAfter: Date
}

/** TLS 1.0 and 1.1 are not offered: Node's OpenSSL 3 refuses them at its default security level whatever minVersion says. */
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const
export type TlsVersion = (typeof TLS_VERSIONS)[number]

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

function readTlsFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message
    throw new TlsFileError(key, file, `cannot read it (${why}); check the path and that mxgate's user may read it`)
  }
}

/** Every certificate in a PEM file, parsed; throws when there is none or one does not parse. */
function certificates(key: string, file: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? []
  if (blocks.length === 0) {
    throw new TlsFileError(key, file, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)')
  }
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b)
    } catch (err) {
      throw new TlsFileError(key, file, `certificate ${i + 1} does not parse: ${(err as Error).message}`)
    }
  })
}

/**
 * Reads a certificate chain and its private key and checks that they belong together: both PEM, the key
 * unencrypted, the key the one the first (leaf) certificate was issued for.
 */
export function readKeyPair(certFile: string, keyFile: string): KeyPair {
  const cert = readTlsFile('tls.cert', certFile)
  const key = readTlsFile('tls.key', keyFile)
  const leaf = certificates('tls.cert', certFile, cert)[0]!
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(key)
  } catch (err) {
    const msg = (err as Error).message
    if (/passphrase/i.test(msg)) {
      throw new TlsFileError(
        'tls.key',
        keyFile,
        'the key is encrypted with a passphrase; give mxgate an unencrypted copy readable only by its user (openssl pkey -in KEY -out KEY.plain)',
      )
    }
    throw new TlsFileError('tls.key', keyFile, `holds no usable PEM private key (${msg})`)
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsFileError(
      'tls.key',
      keyFile,
      `does not match the certificate in ${certFile}; set tls.key to the key that certificate was issued for (compare \`openssl x509 -noout -pubkey -in CERT\` with \`openssl pkey -pubout -in KEY\`)`,
    )
  }
  return { cert, key, subject: leaf.subject.replace(/\n/g, ', '), notAfter: new Date(leaf.validTo) }
}

/** Reads a CA file (one or more PEM certificates) that backend certificates are verified against. */
export function readCaFile(file: string): Buffer {
  const pem = readTlsFile('backend_client.tls_ca', file)
  certificates('backend_client.tls_ca', file, pem)
  return pem
}
