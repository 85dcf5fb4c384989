// Reads mxgate's pino JSON log lines into the three kinds of event the demo shows: backend state changes (with the
// ejection's evidence), the outlier detector's own notices, and per-message relay outcomes. Pure: a line in, an
// event (or null) out. How events read on screen is narration.ts's job.

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
  /** The breaker's rolling window at the change (attempts and backend faults in it). */
  window: { attempts: number; faults: number } | null
  /** What the detector saw, when the detector (or probation's stricter test) ejected the backend. */
  evidence: DetectorEvidence | null
}

/** The detector's evidence as the health log line carries it (src/health/registry.ts EjectionEvidence). */
export interface DetectorEvidence {
  signal: 'fault' | 'refusal'
  /** Faults and messages behind the statistic (since it last stood at zero). */
  faults: number
  messages: number
  /** The backend's own fault rate over the detector's window. */
  rate: number
  /** The rest of the pool's rate over the window; null when there was too little traffic to compare. */
  poolRate: number | null
  statistic: number
  threshold: number
  firstFaultAt: number | null
}

/** A notice of the detector's own: an ejection held back (budget, observe mode, degraded pool), budget reached. */
export interface DetectorNotice {
  kind: 'detector'
  at: number
  /** pino's level: 30 info, 40 warn, 50 error. */
  level: number
  /** The backend it is about, when it is about one. */
  backend: string | null
  text: string
}

export interface MessageEvent {
  kind: 'message'
  outcome: 'relayed' | 'spooled' | 'deferred' | 'rejected'
  /** Backends that took (part of) the message. */
  backends: string[]
  /** Every backend tried, in order, with whose fault a failure was. */
  attempts: { backendId: string; verdict: string; detail: string }[]
}

export type LogEvent = HealthEvent | DetectorNotice | MessageEvent

const MESSAGE_OUTCOMES: Record<string, MessageEvent['outcome']> = {
  relayed: 'relayed',
  spooled: 'spooled',
  deferred: 'deferred',
  'rejected by backend': 'rejected',
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null)
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
const obj = (v: unknown): Record<string, unknown> | null =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null

function parseWindow(v: unknown): HealthEvent['window'] {
  const w = obj(v)
  const attempts = num(w?.attempts)
  const faults = num(w?.faults)
  return attempts === null || faults === null ? null : { attempts, faults }
}

function parseEvidence(v: unknown): DetectorEvidence | null {
  const e = obj(v)
  if (e === null) return null
  const faults = num(e.faults)
  const messages = num(e.messages)
  const rate = num(e.rate)
  const statistic = num(e.statistic)
  const threshold = num(e.threshold)
  if (faults === null || messages === null || rate === null || statistic === null || threshold === null) return null
  return {
    signal: e.signal === 'refusal' ? 'refusal' : 'fault',
    faults,
    messages,
    rate,
    poolRate: num(e.poolRate),
    statistic,
    threshold,
    firstFaultAt: num(e.firstFaultAt),
  }
}

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
      until: num(rec.until),
      window: parseWindow(rec.window),
      evidence: parseEvidence(rec.evidence),
    }
  }
  if (rec.part === 'detector') {
    const text = str(rec.msg)
    if (text === null) return null
    return { kind: 'detector', at, level: num(rec.level) ?? 30, backend: str(rec.backend), text }
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
