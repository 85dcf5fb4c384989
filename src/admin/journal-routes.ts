// The journal's endpoints: list what a backend took in a window (GET /api/journal) and put it back into the spool
// for the other backends (POST /api/replay). Times are ISO 8601 with a zone, e.g. 2026-12-04T10:00:00Z.
import { actorOf, HttpError, onlyFields, type Route } from './routes'

/** A replay of a big window writes many spool files: give it longer than an ordinary change. */
const REPLAY_TIMEOUT_MS = 10 * 60_000
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i
const ISO_EXAMPLE = '2026-12-04T10:00:00Z'

/** An ISO 8601 time with a zone, as epoch ms; HttpError naming the field otherwise. */
export function isoTime(raw: unknown, field: string): number {
  const ms = typeof raw === 'string' && ISO_RE.test(raw.trim()) ? Date.parse(raw.trim()) : Number.NaN
  if (!Number.isFinite(ms)) {
    throw new HttpError(
      400,
      `${field} must be an ISO 8601 time with a zone such as "${ISO_EXAMPLE}", got ${JSON.stringify(raw ?? null)}`,
    )
  }
  return ms
}

/** since (required) and until (default now), checked for order and against the future. */
export function window(rawSince: unknown, rawUntil: unknown, now = Date.now()): { since: number; until: number } {
  if (rawSince === undefined || rawSince === null || rawSince === '') {
    throw new HttpError(400, `since is required: the start of the window, e.g. "${ISO_EXAMPLE}"`)
  }
  const since = isoTime(rawSince, 'since')
  const until = rawUntil === undefined || rawUntil === null || rawUntil === '' ? now : isoTime(rawUntil, 'until')
  if (since > now) throw new HttpError(400, `since (${new Date(since).toISOString()}) is in the future`)
  if (until <= since) {
    throw new HttpError(
      400,
      `until (${new Date(until).toISOString()}) must be after since (${new Date(since).toISOString()})`,
    )
  }
  return { since, until }
}

function backendOf(raw: unknown): string {
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw new HttpError(400, `backend must be a backend id (a non-empty string), got ${JSON.stringify(raw ?? null)}`)
  }
  return raw.trim()
}

function flag(raw: unknown, field: string): boolean {
  if (raw === undefined || raw === null) return false
  if (typeof raw !== 'boolean') throw new HttpError(400, `${field} must be true or false, got ${JSON.stringify(raw)}`)
  return raw
}

export const JOURNAL_ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: '/api/journal',
    private: 'reading the journal (it shows envelope addresses)',
    handle: async ({ port, query }) => {
      const backend = backendOf(query.get('backend'))
      const { since, until } = window(query.get('since') ?? undefined, query.get('until') ?? undefined)
      return { json: await port.journal.list(backend, since, until) }
    },
  },
  {
    method: 'POST',
    pattern: '/api/replay',
    change: 'replay',
    timeoutMs: REPLAY_TIMEOUT_MS,
    handle: async (ctx) => {
      onlyFields(ctx.body, 'replay', ['backend', 'since', 'until', 'dry_run', 'again'])
      const backend = backendOf(ctx.body.backend)
      const { since, until } = window(ctx.body.since, ctx.body.until)
      const dryRun = flag(ctx.body.dry_run, 'dry_run')
      const again = flag(ctx.body.again, 'again')
      ctx.audit.what = `${dryRun ? 'replay (dry run)' : 'replay'} ${backend}`
      Object.assign(ctx.audit.details, {
        backend,
        since: new Date(since).toISOString(),
        until: new Date(until).toISOString(),
        dryRun,
        again,
      })
      const r = await ctx.port.journal.replay({ backend, since, until, dryRun, again }, actorOf(ctx))
      Object.assign(ctx.audit.details, { messages: r.messages, bytes: r.bytes, skipped: r.skipped, error: r.error })
      return { json: r }
    },
  },
]
