// The admin API's endpoints: what each one reads from the body, which AdminPort call it makes, what it answers.
// server.ts owns HTTP (matching, auth, body size, errors); a route only sees parsed params and a JSON object.
import { parseDuration } from '../config/units'
import { type Actor, type AdminPort, ReloadRefusedError } from './types'

/** A request the API refuses, with the HTTP status and a message that names the problem and the fix. */
export class HttpError extends Error {
  readonly code = 'EHTTP'
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

/** What a route answers; `headers` are added to the server's own (a page's Content-Security-Policy). */
export type Reply = ({ json: unknown } | { text: string; contentType: string }) & {
  status?: number
  headers?: Record<string, string>
}

/** What the audit line says about a change; routes fill in `why` (and details) once the body is parsed. */
export interface AuditNote {
  what: string
  why: string | null
  details: Record<string, unknown>
}

export interface RouteContext {
  port: AdminPort
  params: Record<string, string>
  /** The query string (?minutes=30). */
  query: URLSearchParams
  body: Record<string, unknown>
  /** Set for change routes (after auth); null for reads. */
  actor: Actor | null
  audit: AuditNote
}

export interface Route {
  method: 'GET' | 'POST'
  /** Path with `:name` segments, e.g. /api/backends/:id/eject. */
  pattern: string
  /** Change routes need a token and write an audit line; the name is the action. */
  change?: string
  /** Reads that show envelope addresses need a token too (no audit line); the text names the read in errors. */
  private?: string
  /** A change that may take longer than the server's change timeout (a replay of many messages). */
  timeoutMs?: number
  /** A webhook: its own token (canary.webhook_token), never an admin token; no JSON body, no audit line. */
  hook?: 'canary'
  handle(ctx: RouteContext): Promise<Reply> | Reply
}

const MAX_REASON = 500
const MAX_EJECT_MS = 366 * 86_400_000
const DURATION_WITH_UNIT = /^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*$/i
const FOR_FORMS = 'a duration with a unit ("90s", "30m", "2h", "1d") or a number of milliseconds'

export function onlyFields(body: Record<string, unknown>, action: string, allowed: string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      const accepted = allowed.length > 0 ? `accepted: ${allowed.join(', ')}` : 'it takes no fields'
      throw new HttpError(400, `unknown field "${key}" in the ${action} request; ${accepted}`)
    }
  }
}

/** The operator's reason as one line, or undefined when absent. */
function reasonOf(body: Record<string, unknown>, action: string, id: string): string | undefined {
  const raw = body.reason
  if (raw === undefined || raw === null) return undefined
  if (typeof raw !== 'string')
    throw new HttpError(400, `reason must be a string, got ${typeof raw}: say why you ${action} ${id}`)
  const reason = raw.replace(/\s+/g, ' ').trim()
  if (reason === '') return undefined
  if (reason.length > MAX_REASON) {
    throw new HttpError(
      400,
      `reason is ${reason.length} characters; keep it under ${MAX_REASON} (link to a ticket for more)`,
    )
  }
  return reason
}

/** `for` as milliseconds: null when absent (until restored). Throws HttpError naming the value and the forms. */
export function ejectDurationOf(raw: unknown): number | null {
  if (raw === undefined || raw === null) return null
  let ms: number | null = null
  if (typeof raw === 'number' && Number.isInteger(raw) && raw > 0) ms = raw
  else if (typeof raw === 'string' && DURATION_WITH_UNIT.test(raw)) ms = parseDuration(raw)
  if (ms === null || ms <= 0) throw new HttpError(400, `for must be ${FOR_FORMS}; got ${JSON.stringify(raw)}`)
  if (ms > MAX_EJECT_MS) {
    throw new HttpError(
      400,
      `for is longer than 366d (got ${JSON.stringify(raw)}); leave it out to eject until restored`,
    )
  }
  return ms
}

export function actorOf(ctx: RouteContext): Actor {
  if (ctx.actor === null) throw new Error('change route ran without an actor')
  return ctx.actor
}

function id(ctx: RouteContext): string {
  return ctx.params.id ?? ''
}

const backendRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/api/backends',
    handle: ({ port }) => ({
      json: { node: port.nodeName, configVersion: port.configVersion, nodes: port.nodes(), backends: port.backends() },
    }),
  },
  {
    method: 'GET',
    pattern: '/api/backends/:id',
    handle: (ctx) => ({ json: ctx.port.backend(id(ctx)) }),
  },
  {
    method: 'POST',
    pattern: '/api/backends/:id/eject',
    change: 'eject',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'eject', ['reason', 'for'])
      const reason = reasonOf(ctx.body, 'eject', id(ctx))
      if (reason === undefined) throw new HttpError(400, `reason is required: say why you eject ${id(ctx)}`)
      ctx.audit.why = reason
      const forMs = ejectDurationOf(ctx.body.for)
      ctx.audit.details.forMs = forMs
      return { json: await ctx.port.eject(id(ctx), reason, forMs, actorOf(ctx)) }
    },
  },
  {
    method: 'POST',
    pattern: '/api/backends/:id/drain',
    change: 'drain',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'drain', ['reason'])
      const reason = reasonOf(ctx.body, 'drain', id(ctx)) ?? 'no reason given'
      ctx.audit.why = reason
      return { json: await ctx.port.drain(id(ctx), reason, actorOf(ctx)) }
    },
  },
  {
    method: 'POST',
    pattern: '/api/backends/:id/restore',
    change: 'restore',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'restore', ['reason'])
      ctx.audit.why = reasonOf(ctx.body, 'restore', id(ctx)) ?? null
      return { json: await ctx.port.restore(id(ctx), actorOf(ctx)) }
    },
  },
]

const spoolRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/api/spool',
    private: 'reading the spool (it shows envelope addresses)',
    handle: ({ port }) => ({ json: { node: port.nodeName, messages: port.spool.list() } }),
  },
  {
    method: 'GET',
    pattern: '/api/spool/:id',
    private: 'reading a spooled message (it shows envelope addresses)',
    handle: (ctx) => ({ json: ctx.port.spool.show(id(ctx)) }),
  },
  {
    method: 'POST',
    pattern: '/api/spool/flush',
    change: 'flush',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'flush', ['id'])
      const target = ctx.body.id
      if (target !== undefined && target !== null && (typeof target !== 'string' || target === '')) {
        throw new HttpError(
          400,
          `id must be a message id (a non-empty string), got ${JSON.stringify(target)}; leave it out to flush all`,
        )
      }
      const one = typeof target === 'string' ? target : undefined
      ctx.audit.what = one === undefined ? 'flush all' : `flush ${one}`
      const scheduled = await ctx.port.spool.flush(one, actorOf(ctx))
      ctx.audit.details.scheduled = scheduled
      return { json: { node: ctx.port.nodeName, scheduled } }
    },
  },
  {
    method: 'POST',
    pattern: '/api/spool/:id/hold',
    change: 'hold',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'hold', ['reason'])
      ctx.audit.why = reasonOf(ctx.body, 'hold', id(ctx)) ?? null
      return { json: await ctx.port.spool.hold(id(ctx), actorOf(ctx)) }
    },
  },
  {
    method: 'POST',
    pattern: '/api/spool/:id/release',
    change: 'release',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'release', ['reason'])
      ctx.audit.why = reasonOf(ctx.body, 'release', id(ctx)) ?? null
      return { json: await ctx.port.spool.release(id(ctx), actorOf(ctx)) }
    },
  },
  {
    method: 'POST',
    pattern: '/api/spool/:id/bounce',
    change: 'bounce',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'bounce', ['reason'])
      ctx.audit.why = reasonOf(ctx.body, 'bounce', id(ctx)) ?? null
      await ctx.port.spool.bounce(id(ctx), actorOf(ctx))
      return { json: { id: id(ctx), bounced: true } }
    },
  },
]

const probeRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/healthz',
    handle: ({ port }) =>
      port.healthy()
        ? { text: 'ok\n', contentType: 'text/plain; charset=utf-8' }
        : { status: 503, text: 'unhealthy\n', contentType: 'text/plain; charset=utf-8' },
  },
  {
    method: 'GET',
    pattern: '/readyz',
    handle: ({ port }) => {
      const r = port.readiness()
      return { status: r.ready ? 200 : 503, json: { node: port.nodeName, ready: r.ready, reasons: r.reasons } }
    },
  },
  {
    method: 'GET',
    pattern: '/metrics',
    handle: async ({ port }) => ({ text: await port.metrics.metrics(), contentType: port.metrics.contentType }),
  },
]

const TOKEN_SHAPE = /^mxc-[0-9a-f]{24}$/

const canaryRoutes: Route[] = [
  {
    method: 'POST',
    pattern: '/api/canaries/:token',
    hook: 'canary',
    handle: ({ port, params }) => {
      const token = params.token ?? ''
      if (!TOKEN_SHAPE.test(token))
        throw new HttpError(400, `"${token.slice(0, 64)}" is not a canary token; it looks like mxc- and 24 hex digits`)
      const outcome = port.canaryReturned?.(token) ?? { kind: 'off' as const }
      if (outcome.kind === 'off') throw new HttpError(409, 'canaries are off on this node (canary.address is not set)')
      return { json: { node: port.nodeName, token, ...outcome } }
    },
  },
]

const reloadRoutes: Route[] = [
  {
    method: 'POST',
    pattern: '/api/reload',
    change: 'reload',
    handle: async (ctx) => {
      onlyFields(ctx.body, 'reload', ['reason'])
      ctx.audit.why = reasonOf(ctx.body, 'reload', 'the configuration') ?? null
      try {
        const view = await ctx.port.reload(actorOf(ctx))
        ctx.audit.details.configVersion = view.configVersion
        return { json: view }
      } catch (err) {
        // The file is wrong, not the request: 422, and the running settings stay as they were.
        if (err instanceof ReloadRefusedError) throw new HttpError(422, err.message)
        throw err
      }
    },
  },
]

export const ROUTES: readonly Route[] = [
  ...probeRoutes,
  ...backendRoutes,
  ...spoolRoutes,
  ...canaryRoutes,
  ...reloadRoutes,
]

/** Splits a pattern or a path into segments; the path's segments are percent-decoded. */
function segments(path: string, decode: boolean): string[] {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
  return trimmed
    .split('/')
    .slice(1)
    .map((s) => {
      if (!decode) return s
      try {
        return decodeURIComponent(s)
      } catch {
        throw new HttpError(400, `the path segment "${s}" is not valid percent-encoding`)
      }
    })
}

function matchPattern(pattern: string, parts: string[]): Record<string, string> | null {
  const want = segments(pattern, false)
  if (want.length !== parts.length) return null
  const params: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!
    const p = parts[i]!
    if (w.startsWith(':')) {
      if (p === '') return null
      params[w.slice(1)] = p
    } else if (w !== p) return null
  }
  return params
}

export type RouteMatch =
  | { kind: 'found'; route: Route; params: Record<string, string> }
  | { kind: 'wrong-method'; allow: string[] }
  | { kind: 'none' }

/** Finds the route for a method and path; a literal segment wins over a `:param` (POST /api/spool/flush). */
export function findRoute(routes: readonly Route[], method: string, path: string): RouteMatch {
  const parts = segments(path, true)
  const effective = method === 'HEAD' ? 'GET' : method
  const allow = new Set<string>()
  let best: { route: Route; params: Record<string, string>; literal: number } | null = null
  for (const route of routes) {
    const params = matchPattern(route.pattern, parts)
    if (params === null) continue
    allow.add(route.method)
    if (route.method !== effective) continue
    const literal = segments(route.pattern, false).filter((s) => !s.startsWith(':')).length
    if (best === null || literal > best.literal) best = { route, params, literal }
  }
  if (best) return { kind: 'found', route: best.route, params: best.params }
  if (allow.size > 0) {
    if (allow.has('GET')) allow.add('HEAD')
    return { kind: 'wrong-method', allow: [...allow].sort() }
  }
  return { kind: 'none' }
}
