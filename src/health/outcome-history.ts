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
  /** Settled buckets (no count arrives for them any more): bucket start → backend id → counts. */
  private readonly settled = new Map<number, Map<string, OutcomeCounts>>()
  private timer: NodeJS.Timeout | null = null
  /** The newest bucket copied into `settled`. */
  private settledUpTo = -Infinity

  constructor(
    private readonly store: Pick<StateStore, 'pooledOutcomes'>,
    private readonly ids: () => string[],
    private readonly timing: { bucketMs: number; retentionMs: number },
    private readonly keepMs = HISTORY_KEEP_MS,
  ) {}

  /** Copies once per bucket: retention is at least three buckets (config check), so none ages out unseen. */
  start(): void {
    if (this.timer) return
    this.settle()
    this.timer = setInterval(() => this.settle(), this.timing.bucketMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * Buckets older than this may still change (late counts from other nodes); younger ones are read live. Never
   * older than the store keeps, so every bucket is copied before it ages out.
   */
  private freshFrom(current: number): number {
    const b = this.timing.bucketMs
    return current - Math.min(FRESH_MS, this.timing.retentionMs - 2 * b)
  }

  /** Counts of one bucket per backend (only those with attempts). */
  private read(start: number): Map<string, OutcomeCounts> {
    const row = new Map<string, OutcomeCounts>()
    for (const id of this.ids()) {
      // A window of 0 at the bucket's start reads exactly that bucket.
      const c = this.store.pooledOutcomes(id, 0, start)
      if (c.ok + c.fail > 0) row.set(id, { ok: c.ok, fail: c.fail, refused: c.refused })
    }
    return row
  }

  /** Copies every bucket that has settled since the last call (each once) and forgets those past keepMs. */
  settle(now = Date.now()): void {
    const b = this.timing.bucketMs
    const current = Math.floor(now / b) * b
    const oldestHeld = current - (this.timing.retentionMs - b)
    const upTo = this.freshFrom(current) - b
    for (let start = Math.max(oldestHeld, this.settledUpTo + b); start <= upTo; start += b) {
      const row = this.read(start)
      if (row.size > 0) this.settled.set(start, row)
    }
    this.settledUpTo = Math.max(this.settledUpTo, upTo)
    for (const start of this.settled.keys()) if (start < current - this.keepMs) this.settled.delete(start)
  }

  /** Settled buckets, then the fresh ones read live from the store. */
  private buckets(now: number): Iterable<[number, Map<string, OutcomeCounts>]> {
    this.settle(now)
    const b = this.timing.bucketMs
    const current = Math.floor(now / b) * b
    const live: [number, Map<string, OutcomeCounts>][] = []
    for (let start = this.settledUpTo + b; start <= current; start += b) live.push([start, this.read(start)])
    return [...this.settled, ...live]
  }

  /** The counts of the last `windowMs` (at most keepMs) in at most MAX_POINTS steps of whole buckets. */
  series(windowMs: number, now = Date.now()): HistorySeries {
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
    for (const [start, row] of this.buckets(now)) {
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
