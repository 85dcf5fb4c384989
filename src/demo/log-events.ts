// Reads mxgate's pino JSON log lines into the two kinds of event the demo shows: backend state changes and
// per-message relay outcomes. Pure: a line in, an event (or null) out.

export interface HealthEvent {
  kind: 'health'
  backend: string
  from: string
  to: string
  reason: string | null
  /** Log time, ms since the epoch. */
  at: number
  /** End of the ejection (ms since the epoch) when `to` is 'ejected'. */
  until: number | null
}

export interface MessageEvent {
  kind: 'message'
  outcome: 'relayed' | 'deferred' | 'rejected'
  /** Backends that took (part of) the message. */
  backends: string[]
  /** Every backend tried, in order, with whose fault a failure was. */
  attempts: { backendId: string; verdict: string; detail: string }[]
}

export type LogEvent = HealthEvent | MessageEvent

const MESSAGE_OUTCOMES: Record<string, MessageEvent['outcome']> = {
  relayed: 'relayed',
  deferred: 'deferred',
  'rejected by backend': 'rejected',
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null)

/** One stdout line of `mxgate start`; null for anything else (Haraka's own lines, other parts' logs, noise). */
export function parseLogLine(line: string): LogEvent | null {
  if (!line.startsWith('{')) return null
  let rec: Record<string, unknown>
  try {
    const parsed: unknown = JSON.parse(line)
    if (typeof parsed !== 'object' || parsed === null) return null
    rec = parsed as Record<string, unknown>
  } catch {
    return null
  }
  const at = Date.parse(str(rec.time) ?? '') || Date.now()
  if (rec.part === 'health') {
    const backend = str(rec.backend)
    const from = str(rec.from)
    const to = str(rec.to)
    if (backend === null || from === null || to === null) return null
    return {
      kind: 'health',
      backend,
      from,
      to,
      reason: str(rec.reason),
      at,
      until: typeof rec.until === 'number' ? rec.until : null,
    }
  }
  const outcome = MESSAGE_OUTCOMES[str(rec.msg) ?? '']
  if (rec.part === 'smtp' && outcome !== undefined) {
    const backends = Array.isArray(rec.backends) ? rec.backends.filter((b): b is string => typeof b === 'string') : []
    const attempts = Array.isArray(rec.attempts)
      ? rec.attempts
          .filter((a): a is Record<string, unknown> => typeof a === 'object' && a !== null)
          .map((a) => ({
            backendId: str(a.backendId) ?? '?',
            verdict: str(a.verdict) ?? '?',
            detail: str(a.detail) ?? '',
          }))
      : []
    return { kind: 'message', outcome, backends, attempts }
  }
  return null
}

/** How a state change reads on screen, e.g. "mx3 admitted → ejected for 2s: 6 of 9 attempts failed (67%) …". */
export function describeHealthEvent(e: HealthEvent): string {
  const forHowLong = e.to === 'ejected' && e.until !== null ? ` for ${formatSeconds(e.until - e.at)}` : ''
  const why = e.reason === null ? '' : `: ${e.reason}`
  return `${e.backend} ${e.from} → ${e.to}${forHowLong}${why}`
}

function formatSeconds(ms: number): string {
  const s = Math.max(0, ms) / 1000
  return s < 10 ? `${Number(s.toFixed(1))}s` : `${Math.round(s)}s`
}
