// The admin HTTP server (one per node): routing, JSON in and out, auth for changes, audit lines, errors as JSON.
// Never a stack trace in a response: unexpected errors are logged with an id and answered with that id.
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../log'
import { authorizeChange, authorizeHook, displayAddress, parseTokens, type TokenSet } from './auth'
import { JOURNAL_ROUTES } from './journal-routes'
import { checkJsonContentType, checkOrigin, ownOrigins, WILDCARD_HOSTS } from './request-guard'
import { type AuditNote, findRoute, HttpError, type Reply, ROUTES, type Route } from './routes'
import { STATUS_ROUTES } from './status-routes'
import { type Actor, type AdminPort, JournalOffError, MessageBusyError, NotReadyError, UnknownIdError } from './types'

export const MAX_BODY_BYTES = 64 * 1024
const DEFAULT_CHANGE_TIMEOUT_MS = 15_000
const ALL_ROUTES: readonly Route[] = [...ROUTES, ...STATUS_ROUTES, ...JOURNAL_ROUTES]

export interface AdminServerOptions {
  listen: { host: string; port: number }
  tokens: TokenSet
  port: AdminPort
  /** canary.webhook_token for POST /api/canaries/TOKEN; absent or empty = the webhook is refused. */
  canaryTokens?: TokenSet
  log: Logger
  /** How long a change may take (e.g. waiting on Redis) before the client gets 504; default 15 s. */
  changeTimeoutMs?: number
}

export interface AdminServer {
  address: { host: string; port: number }
  close(): Promise<void>
}

/** The admin API could not listen (port taken, address not local…); the message names the address. */
export class AdminListenError extends Error {
  readonly code = 'EADMINLISTEN'
  constructor(address: string, cause: NodeJS.ErrnoException) {
    super(
      `the admin API cannot listen on ${address}: ${cause.code ?? cause.message}; free the port or set admin.listen (MXGATE_ADMIN_LISTEN)`,
    )
    this.name = 'AdminListenError'
  }
}

class ChangeTimeoutError extends Error {
  readonly code = 'ECHANGETIMEOUT'
}

function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Reads the body up to MAX_BODY_BYTES and parses it as a JSON object; empty = {}. */
async function readJsonObject(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'])
  const tooLarge = () =>
    new HttpError(413, `request body is over ${MAX_BODY_BYTES / 1024} KB; admin requests are small JSON objects`, {
      connection: 'close',
    })
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw tooLarge()
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return {}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err)
    throw new HttpError(400, `request body is not valid JSON (${why}); send a JSON object such as {"reason": "…"}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
    throw new HttpError(400, `request body must be a JSON object, got ${got}`)
  }
  return value as Record<string, unknown>
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ChangeTimeoutError(
            `the node did not finish "${what}" within ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}; it may still take effect: check mxgate status`,
          ),
        ),
      ms,
    )
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { port, tokens, log } = opts
  const canaryTokens = opts.canaryTokens ?? parseTokens(null)
  const changeTimeoutMs = opts.changeTimeoutMs ?? DEFAULT_CHANGE_TIMEOUT_MS
  // Known once the listener is bound (port 0 picks one); no request arrives before that.
  let origins = new Set<string>()
  let wildcard = false

  function send(res: http.ServerResponse, status: number, reply: Reply, headers: Record<string, string> = {}): void {
    if (res.headersSent) return
    const isJson = 'json' in reply
    const body = isJson ? `${JSON.stringify(reply.json)}\n` : reply.text
    res.writeHead(status, {
      'content-type': isJson ? 'application/json; charset=utf-8' : reply.contentType,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-mxgate-node': port.nodeName,
      ...reply.headers,
      ...headers,
    })
    res.end(body)
  }

  function audit(who: string, from: string, note: AuditNote, status: number, result: string): void {
    log.info(
      { audit: true, who, what: note.what, why: note.why, from, status, result, ...note.details },
      'admin change',
    )
  }

  /** Maps an error from a route or the port to a status and message; logs the unexpected ones. */
  function failure(
    err: unknown,
    method: string,
    path: string,
  ): { status: number; error: string; headers: Record<string, string> } {
    if (err instanceof HttpError) return { status: err.status, error: err.message, headers: err.headers }
    if (err instanceof UnknownIdError) return { status: 404, error: err.message, headers: {} }
    if (err instanceof NotReadyError) return { status: 503, error: err.message, headers: { 'retry-after': '5' } }
    if (err instanceof JournalOffError) return { status: 409, error: err.message, headers: {} }
    if (err instanceof MessageBusyError) return { status: 409, error: err.message, headers: { 'retry-after': '1' } }
    if (err instanceof ChangeTimeoutError) return { status: 504, error: err.message, headers: {} }
    const errorId = randomUUID().slice(0, 8)
    log.error({ err, errorId, method, path }, 'admin request failed')
    return {
      status: 500,
      error: `internal error on node ${port.nodeName} (error id ${errorId}); the node log has the details`,
      headers: {},
    }
  }

  async function runRoute(
    route: Route,
    params: Record<string, string>,
    query: URLSearchParams,
    req: http.IncomingMessage,
    actor: Actor | null,
    note: AuditNote,
  ): Promise<Reply> {
    // A webhook's body is not ours to read (a pipeline may post anything): drained, never parsed.
    if (route.hook) req.resume()
    const body = !route.hook && route.method === 'POST' ? await readJsonObject(req) : {}
    const work = Promise.resolve(route.handle({ port, params, query, body, actor, audit: note }))
    return route.change ? withTimeout(work, route.timeoutMs ?? changeTimeoutMs, note.what) : work
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const url = new URL(req.url ?? '/', 'http://admin.invalid')
    const from = displayAddress(req.socket.remoteAddress)
    let note: AuditNote | null = null
    let who = `anonymous@${from}`
    let bodyRead = false
    try {
      const match = findRoute(ALL_ROUTES, method, url.pathname)
      if (match.kind === 'none') {
        throw new HttpError(404, `no such endpoint: ${method} ${url.pathname}; see docs/admin-api.md for the API`)
      }
      if (match.kind === 'wrong-method') {
        throw new HttpError(405, `${method} is not allowed on ${url.pathname}; allowed: ${match.allow.join(', ')}`, {
          allow: match.allow.join(', '),
        })
      }
      const { route, params } = match
      if (route.change) {
        const target = params.id
        note = { what: target === undefined ? route.change : `${route.change} ${target}`, why: null, details: {} }
      }
      checkOrigin(req.headers.origin, req.headers.host, origins, wildcard)
      let actor: Actor | null = null
      if (route.hook) {
        const auth = authorizeHook(canaryTokens, req.headers.authorization, req.socket.remoteAddress)
        if (!auth.ok) {
          who = auth.who
          const headers: Record<string, string> =
            auth.status === 401 ? { 'www-authenticate': 'Bearer realm="mxgate-canary"' } : {}
          throw new HttpError(auth.status, auth.error, headers)
        }
      } else if (route.change || route.private) {
        const need = route.change ? 'this change' : (route.private ?? '')
        const auth = authorizeChange(tokens, req.headers.authorization, req.socket.remoteAddress, need)
        if (!auth.ok) {
          who = auth.who
          const headers: Record<string, string> =
            auth.status === 401 ? { 'www-authenticate': 'Bearer realm="mxgate"' } : {}
          throw new HttpError(auth.status, auth.error, headers)
        }
        if (route.change) {
          actor = auth.actor
          who = actor.by
        }
      }
      if (route.method === 'POST' && !route.hook) checkJsonContentType(req.headers['content-type'])
      bodyRead = true
      const reply = await runRoute(
        route,
        params,
        url.searchParams,
        req,
        actor,
        note ?? { what: '', why: null, details: {} },
      )
      const status = reply.status ?? 200
      send(res, status, reply)
      if (note) audit(who, from, note, status, 'ok')
    } catch (err) {
      const f = failure(err, method, url.pathname)
      // Refused before its body was read (Origin, token, content type): close rather than drain what a hostile
      // client may still be sending.
      const unread = method === 'POST' && !bodyRead
      send(res, f.status, { json: { error: f.error } }, unread ? { ...f.headers, connection: 'close' } : f.headers)
      if (note) audit(who, from, note, f.status, f.error)
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'admin request handler failed')
      if (!res.headersSent) res.writeHead(500).end()
    })
  })
  // Slow or stuck clients must not hold sockets forever; requests are tiny.
  server.requestTimeout = 30_000
  server.headersTimeout = 10_000
  server.keepAliveTimeout = 5_000

  const display = formatAddress(opts.listen.host, opts.listen.port)
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new AdminListenError(display, err))
    server.once('error', onError)
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', onError)
      resolve()
    })
  })
  server.on('error', (err) => log.error({ err }, 'admin server error'))
  const bound = server.address() as AddressInfo
  const address = { host: bound.address, port: bound.port }
  origins = ownOrigins([opts.listen.host, bound.address], bound.port)
  wildcard = WILDCARD_HOSTS.has(opts.listen.host) || WILDCARD_HOSTS.has(bound.address)
  log.info({ address: formatAddress(address.host, address.port), tokens: tokens.names }, 'admin API listening')

  let closing: Promise<void> | undefined
  return {
    address,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
        // A request still running after the grace period (a stuck change is itself bounded) is cut off.
        setTimeout(() => server.closeAllConnections(), 2_000).unref()
      })
      return closing
    },
  }
}
