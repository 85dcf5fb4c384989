// Each backend's outcome counts over the last half hour, for the status page's chart. The state store keeps outcome
// buckets (pooled over nodes) only for the detector's retention (10 min shipped); this copies every bucket before it
// ages out and keeps the copies for `keepMs`. Reads only the store: it never decides anything about a backend.
import type { OutcomeCounts, StateStore } from '../cluster/types'

/** How far back the page can look. */
export const HISTORY_KEEP_MS = 30 * 60_000
/** At most this many points per line: a step is a whole number of buckets. */
const MAX_POINTS = 60
/**
 * Buckets younger than this are re-read on every refresh: other nodes' counts reach a bucket a few seconds after it
 * closes, and the Redis store re-reads older buckets only on its full poll (every 30 s).
 */
const FRESH_MS = 90_000

export interface HistoryPoint {
  /** Epoch ms: the start of the step. */
  at: number
  ok: number
  fail: number
}

export interface HistorySeries {
  /** Epoch ms of the first and the end of the last step. */
  from: number
  to: number
  stepMs: number
  /** Per backend, one point per step (empty steps included, as zeros). */
  backends: Record<string, HistoryPoint[]>
  /** The whole pool: the backends' counts summed. */
  pool: HistoryPoint[]
}

export class OutcomeHistory {
  /** Bucket start → backend id → counts. */
  private readonly buckets = new Map<number, Map<string, OutcomeCounts>>()
  private timer: NodeJS.Timeout | null = null
  /** The newest bucket read by the last refresh. */
  private lastRead = -Infinity

  constructor(
    private readonly store: Pick<StateStore, 'pooledOutcomes'>,
    private readonly ids: () => string[],
    private readonly timing: { bucketMs: number; retentionMs: number },
    private readonly keepMs = HISTORY_KEEP_MS,
  ) {}

  /** Copies once per bucket: retention is at least three buckets (config check), so none ages out unseen. */
  start(): void {
    if (this.timer) return
    this.refresh()
    this.timer = setInterval(() => this.refresh(), this.timing.bucketMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /** Reads the buckets the store may still change (or has not been copied yet) and forgets those past keepMs. */
  refresh(now = Date.now()): void {
    const b = this.timing.bucketMs
    const current = Math.floor(now / b) * b
    const oldestHeld = current - Math.min(this.timing.retentionMs - b, this.keepMs)
    // Everything the store still holds the first time; after that the fresh part and anything not read since.
    const from = Math.max(oldestHeld, Math.min(current - FRESH_MS, this.lastRead))
    this.lastRead = current
    for (let start = Math.ceil(from / b) * b; start <= current; start += b) {
      const row = new Map<string, OutcomeCounts>()
      for (const id of this.ids()) {
        // A window of 0 at the bucket's start reads exactly that bucket.
        const c = this.store.pooledOutcomes(id, 0, start)
        if (c.ok + c.fail > 0) row.set(id, { ok: c.ok, fail: c.fail, refused: c.refused })
      }
      if (row.size > 0) this.buckets.set(start, row)
      else this.buckets.delete(start)
    }
    for (const start of this.buckets.keys()) if (start < current - this.keepMs) this.buckets.delete(start)
  }

  /** The counts of the last `windowMs` (at most keepMs) in at most MAX_POINTS steps of whole buckets. */
  series(windowMs: number, now = Date.now()): HistorySeries {
    this.refresh(now)
    const b = this.timing.bucketMs
    const span = Math.min(Math.max(windowMs, b), this.keepMs)
    const stepMs = b * Math.max(1, Math.ceil(span / MAX_POINTS / b))
    const to = (Math.floor(now / stepMs) + 1) * stepMs
    const steps = Math.ceil(span / stepMs)
    const from = to - steps * stepMs
    const ids = this.ids()
    const empty = () => Array.from({ length: steps }, (_, i) => ({ at: from + i * stepMs, ok: 0, fail: 0 }))
    const backends: Record<string, HistoryPoint[]> = {}
    for (const id of ids) backends[id] = empty()
    const pool = empty()
    for (const [start, row] of this.buckets) {
      if (start < from || start >= to) continue
      const i = Math.floor((start - from) / stepMs)
      for (const [id, c] of row) {
        const line = backends[id]
        if (!line) continue
        line[i]!.ok += c.ok
        line[i]!.fail += c.fail
        pool[i]!.ok += c.ok
        pool[i]!.fail += c.fail
      }
    }
    return { from, to, stepMs, backends, pool }
  }
}
