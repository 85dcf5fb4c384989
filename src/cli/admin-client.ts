// HTTP client for one node's admin API. It only moves JSON; ops.ts decides what a status means for the operator.
import http from 'node:http'
import https from 'node:https'

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8025'
const DEFAULT_TIMEOUT_MS = 15_000

/** The node did not answer (refused, unknown host, timeout…); the message says which and how to fix it. */
export class AdminUnreachableError extends Error {
  readonly code = 'EADMINUNREACHABLE'
  constructor(message: string) {
    super(message)
    this.name = 'AdminUnreachableError'
  }
}

/** Something answered, but not like the mxgate admin API (not JSON where JSON was expected). */
export class AdminProtocolError extends Error {
  readonly code = 'EADMINPROTOCOL'
  constructor(message: string) {
    super(message)
    this.name = 'AdminProtocolError'
  }
}

/** --admin is not an http(s) URL. */
export class AdminUrlError extends Error {
  readonly code = 'EADMINURL'
  constructor(message: string) {
    super(message)
    this.name = 'AdminUrlError'
  }
}

export interface AdminResponse {
  status: number
  body: unknown
  /** The server's clock (Date header) in epoch ms, so relative times do not depend on this machine's clock. */
  serverNow: number | null
  /** The answering node's name (X-Mxgate-Node), for output that names the node. */
  node: string | null
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  ETIMEDOUT: 'connection timed out',
}

function parseBase(text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new AdminUrlError(`--admin must be a URL like ${DEFAULT_ADMIN_URL}, got "${text}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AdminUrlError(`--admin must be an http:// or https:// URL, got "${text}"`)
  }
  return url
}

export class AdminClient {
  readonly base: URL
  /** The URL as the operator should read it in messages (no trailing slash). */
  readonly display: string

  constructor(
    base: string,
    private readonly token: string | undefined,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    this.base = parseBase(base)
    this.display = this.base.href.replace(/\/$/, '')
  }

  get hasToken(): boolean {
    return this.token !== undefined
  }

  /** One request; resolves for any HTTP status, throws AdminUnreachableError / AdminProtocolError otherwise. */
  request(method: 'GET' | 'POST', path: string, body?: object): Promise<AdminResponse> {
    const url = new URL(this.base.href)
    const q = path.indexOf('?')
    url.pathname = `${url.pathname.replace(/\/$/, '')}${q < 0 ? path : path.slice(0, q)}`
    if (q >= 0) url.search = path.slice(q)
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (payload !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(payload))
    }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    const transport = url.protocol === 'https:' ? https : http
    return new Promise<AdminResponse>((resolve, reject) => {
      const req = transport.request(url, { method, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', (err) => reject(this.unreachable(err)))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          const date = res.headers.date === undefined ? Number.NaN : Date.parse(res.headers.date)
          const status = res.statusCode ?? 0
          let parsed: unknown
          try {
            parsed = JSON.parse(text)
          } catch {
            const type = res.headers['content-type'] ?? 'no content type'
            reject(
              new AdminProtocolError(
                `${this.display} answered ${method} ${path} with ${status} and ${type}, not the mxgate admin API's JSON; check --admin`,
              ),
            )
            return
          }
          const node = res.headers['x-mxgate-node']
          resolve({
            status,
            body: parsed,
            serverNow: Number.isFinite(date) ? date : null,
            node: typeof node === 'string' ? node : null,
          })
        })
      })
      req.setTimeout(this.timeoutMs, () => {
        const err: NodeJS.ErrnoException = new Error('timeout')
        err.code = 'ETIMEDOUT'
        req.destroy(err)
      })
      req.on('error', (err) => reject(this.unreachable(err)))
      req.end(payload)
    })
  }

  private unreachable(err: NodeJS.ErrnoException): AdminUnreachableError {
    const why =
      err.code === 'ETIMEDOUT'
        ? `no answer within ${Math.round(this.timeoutMs / 1000)} s`
        : (REASONS[err.code ?? ''] ?? err.code ?? err.message)
    return new AdminUnreachableError(
      `cannot reach the admin API at ${this.display}: ${why}; is mxgate running? use --admin URL (or MXGATE_ADMIN_URL)`,
    )
  }
}
