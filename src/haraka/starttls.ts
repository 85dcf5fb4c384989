// Inbound STARTTLS (RFC 3207) on Haraka's listener with the certificate and key named in mxgate's config: offered only
// when both are configured, plain text pipelined behind STARTTLS discarded, the pair re-read when its files change.
//
// It drives Haraka's own socket upgrade (tls_socket's pluggable stream, which every plain listener uses) instead of
// loading Haraka's `tls` plugin: that plugin takes its files from Haraka's tls.ini and config directory, would need
// the plugin list to change with mxgate's settings, asks every sender for a client certificate, and lets a second
// STARTTLS inside TLS start another handshake. Like tuning.ts this touches Haraka 3.3.4 internals (tls_socket's
// `certsByHost` and `cfg`, `connection.client.upgrade`, `connection.setTLS`): re-check them when upgrading Haraka.
import { statSync } from 'node:fs'
import tls from 'node:tls'
import constants from 'haraka-constants'
import { ConfigError } from '../config/load'
import type { MxgateConfig } from '../config/schema'
import { readKeyPair, TlsFileError, type TlsVersion } from '../config/tls'
import type { Logger } from '../log'
import type { HarakaConnection, Next } from './haraka-types'

/** How often, at most, a STARTTLS looks at the files' metadata for a new pair (two stat calls). */
const RELOAD_CHECK_MS = 1000
/** A sender that has not finished the handshake by then is disconnected (below the plugin's hook timeout). */
const HANDSHAKE_TIMEOUT_MS = 30_000

/** The certificate and key in use, re-read when either file changes (a rename into place, a symlink swap, a write). */
export class InboundCredentials {
  private ctx: tls.SecureContext
  private loaded: string
  /** The file state of a pair that failed to load: not retried (nor logged again) until the files change again. */
  private failed = ''
  private checkedAt = 0

  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private readonly minVersion: TlsVersion,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.loaded = this.stamp()
    this.ctx = this.load()
  }

  /** The context for the next handshake; at most once a second it first checks the files for a new pair. */
  context(): tls.SecureContext {
    const now = this.now()
    if (now - this.checkedAt >= RELOAD_CHECK_MS) {
      this.checkedAt = now
      this.reloadIfChanged()
    }
    return this.ctx
  }

  private reloadIfChanged(): void {
    const stamp = this.stamp()
    if (stamp === this.loaded || stamp === this.failed) return
    try {
      this.ctx = this.load()
      this.loaded = stamp
      this.failed = ''
    } catch (err) {
      // Mid-rotation (a new certificate beside the old key) or a broken file: keep serving the pair that works.
      this.failed = stamp
      this.log.error(
        { err: (err as Error).message, cert: this.certFile, key: this.keyFile },
        'inbound TLS certificate not reloaded; still using the previous one',
      )
    }
  }

  private load(): tls.SecureContext {
    const pair = readKeyPair(this.certFile, this.keyFile)
    const ctx = tls.createSecureContext({ cert: pair.cert, key: pair.key, minVersion: this.minVersion })
    const days = Math.floor((pair.notAfter.getTime() - this.now()) / 86_400_000)
    const fields = { subject: pair.subject, notAfter: pair.notAfter.toISOString(), cert: this.certFile }
    if (days < 0) this.log.error(fields, 'inbound TLS certificate has expired; senders that verify will not use it')
    else if (days < 14) this.log.warn({ ...fields, days }, 'inbound TLS certificate expires soon')
    else this.log.info(fields, 'inbound TLS certificate loaded')
    return ctx
  }

  private stamp(): string {
    return [this.certFile, this.keyFile]
      .map((f) => {
        try {
          const s = statSync(f)
          return `${s.ino}:${s.size}:${s.mtimeMs}`
        } catch {
          return 'unreadable'
        }
      })
      .join('|')
  }
}

/** The parts of Haraka's tls_socket module the upgrade reads. */
interface HarakaTlsSocket {
  cfg: unknown
  certsByHost: Record<string, unknown>
}

interface TlsConnection extends HarakaConnection {
  tls: { enabled: boolean; advertised?: boolean }
  capabilities: string[] | null
  client: {
    upgrade(done: (verified: boolean, verifyError: unknown, cert: unknown, cipher: unknown) => void): void
  }
  reset_transaction(done: () => void): void
  setTLS(info: { cipher: unknown; verified: boolean; verifyError: unknown; peerCertificate: unknown }): void
}

let credentials: InboundCredentials | null = null
/** Connections in a handshake: what to do if they disconnect first (call the hook's next once). */
const pending = new WeakMap<object, () => void>()

/**
 * Sets Haraka's upgrade up before its listener starts. With this in place Haraka never reads tls.ini nor looks for
 * config/tls_key.pem (which logged two misleading errors at every start). Throws on a bad pair (checked at load too).
 */
export function installStarttls(cfg: MxgateConfig, log: Logger): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tlsSocket = require('Haraka/tls_socket') as HarakaTlsSocket
  const { cert, key, minVersion } = cfg.tls
  try {
    credentials = cert !== null && key !== null ? new InboundCredentials(cert, key, minVersion, log) : null
  } catch (err) {
    // Checked at load; only a file changed since then gets here: still a configuration error, exit 2.
    if (err instanceof TlsFileError) throw new ConfigError(cfg.files.at(-1) ?? 'environment', err.key, err.message)
    throw err
  }
  installedFrom = { cert, key, minVersion }
  tlsSocket.cfg = {
    main: { requireAuthorized: [], no_starttls_ports: [] },
    redis: {},
    no_tls_hosts: {},
    mutual_auth_hosts: {},
    mutual_auth_hosts_exclude: {},
  }
  // upgrade() copies these into its TLSSocket options: the getter hands each handshake the current pair. Senders
  // are not asked for a client certificate (an MX authenticates nobody by it; Postfix's smtpd_tls_ask_ccert = no).
  tlsSocket.certsByHost['*'] = {
    isServer: true,
    requestCert: false,
    rejectUnauthorized: false,
    get secureContext() {
      return credentials?.context()
    },
  }
}

let installedFrom: { cert: string | null; key: string | null; minVersion: TlsVersion } | null = null

/**
 * A reload named other files (or another minimum version): the next handshake uses the new pair; a pair that fails
 * to load leaves the old one in use and returns a note saying so. Unchanged names need nothing: the files are
 * re-read whenever they change. Null when nothing needed saying.
 */
export function reloadStarttls(cfg: MxgateConfig, log: Logger): string | null {
  const { cert, key, minVersion } = cfg.tls
  const was = installedFrom
  if (was === null || (was.cert === cert && was.key === key && was.minVersion === minVersion)) return null
  try {
    credentials = cert !== null && key !== null ? new InboundCredentials(cert, key, minVersion, log) : null
    installedFrom = { cert, key, minVersion }
    return null
  } catch (err) {
    log.error({ err: (err as Error).message }, 'inbound TLS pair not reloaded; still using the previous one')
    return `tls: the new certificate pair did not load (${(err as Error).message}); the previous one stays in use`
  }
}

/** EHLO: STARTTLS is offered when a certificate is configured and the session is not encrypted yet. */
export function advertiseStarttls(connection: HarakaConnection): void {
  const c = connection as TlsConnection
  if (credentials === null || c.tls.enabled || c.capabilities === null) return
  c.capabilities.push('STARTTLS')
  c.tls.advertised = true
}

/** Answers a STARTTLS command; false when `verb` is not STARTTLS or none is offered (Haraka answers 500 then). */
export function handleStarttls(
  next: Next,
  connection: HarakaConnection,
  verb: string,
  arg: string,
  log: Logger,
): boolean {
  if (verb.toUpperCase() !== 'STARTTLS' || credentials === null) return false
  const c = connection as TlsConnection
  const refuse = (code: number, text: string) => {
    c.respond(code, text)
    next(constants.ok)
  }
  // Replies as Postfix's smtpd words them.
  if (arg.trim() !== '') refuse(501, '5.5.4 Syntax: STARTTLS')
  else if (c.tls.enabled) refuse(554, '5.5.1 Error: TLS already active')
  else if (c.transaction) refuse(503, '5.5.1 Error: MAIL transaction in progress')
  else upgrade(next, c, log)
  return true
}

function upgrade(next: Next, c: TlsConnection, log: Logger): void {
  // RFC 3207 §4 (CVE-2011-0411): whatever the client sent behind STARTTLS came in plain text, where anyone on the
  // path could have added it; it must not run inside the encrypted session.
  const injected = c.current_data?.length ?? 0
  c.current_data = null
  if (injected > 0) {
    log.warn({ ip: c.remote.ip, bytes: injected }, 'discarded plain text pipelined behind STARTTLS')
  }
  let settled = false
  const settle = (retval?: number) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    pending.delete(c)
    next(retval)
  }
  const timer = setTimeout(() => settle(constants.denysoftdisconnect), HANDSHAKE_TIMEOUT_MS)
  pending.set(c, () => settle())
  c.respond(220, '2.0.0 Ready to start TLS')
  c.client.upgrade((verified, verifyError, cert, cipher) => {
    if (settled) return
    // The client starts over (RFC 3207 §4.2): no transaction, and setTLS forgets its EHLO, so MAIL needs a new one.
    c.reset_transaction(() => {
      c.setTLS({ cipher, verified, verifyError, peerCertificate: cert })
      settle(constants.ok)
    })
  })
}

/** The sender went away, perhaps mid-handshake: let Haraka finish the STARTTLS hook. */
export function starttlsDisconnected(connection: HarakaConnection): void {
  pending.get(connection)?.()
}
