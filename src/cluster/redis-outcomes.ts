// Outcome counters shared through Redis: this node's counts are batched and flushed in one pipeline; every node's
// counts are polled in one pipeline into a local cache, so pooledOutcomes() never touches the network.
import type { Logger } from '../log'
import { type Counts, OutcomeBuckets } from './local-state'
import { type Keys, OUTCOME_KINDS, outcomeField, parseOutcomeField } from './redis-layout'
import type { RedisClient } from './redis-options'
import type { StoreTiming } from './types'

/** Buckets this recent are re-read on every poll; older ones only on a full poll (they rarely change). */
const HOT_BUCKETS = 3
/** ...and at least this far back, so short buckets (tests) still see every flush (1 s) within a poll (2 s) or two. */
const HOT_MS = 10_000

export class OutcomeSync {
  /** This node's counts (the truth for itself, also while Redis is down). */
  private readonly own: OutcomeBuckets
  /** Counts not yet written to Redis. */
  private readonly unflushed: OutcomeBuckets
  /** Other nodes' counts as of the last poll. */
  private readonly others: OutcomeBuckets
  private prunedAt = 0

  constructor(
    private readonly keys: Keys,
    private readonly node: string,
    private readonly timing: StoreTiming,
    private readonly log: Logger,
  ) {
    this.own = new OutcomeBuckets(timing.bucketMs)
    this.unflushed = new OutcomeBuckets(timing.bucketMs)
    this.others = new OutcomeBuckets(timing.bucketMs)
  }

  record(id: string, ok: number, fail: number, at: number, refused = 0): void {
    this.own.add(id, ok, fail, at, refused)
    this.unflushed.add(id, ok, fail, at, refused)
    // Pruning walks every bucket: once per bucket length is enough (this is on the per-message path).
    const now = Date.now()
    if (now - this.prunedAt < this.timing.bucketMs) return
    this.prunedAt = now
    this.own.prune(now - this.timing.retentionMs)
    this.unflushed.prune(now - this.timing.retentionMs)
  }

  pooled(id: string, windowMs: number, now: number): Counts {
    const from = now - Math.min(windowMs, this.timing.retentionMs)
    return this.others.sum(id, from, now, this.own.sum(id, from, now))
  }

  get unflushedBuckets(): number {
    return this.unflushed.size
  }

  /** Write the batched counts in one pipeline; what fails is kept for the next flush. */
  async flush(client: RedisClient): Promise<void> {
    const now = Date.now()
    const pending = this.unflushed.drain()
    const pipeline = client.pipeline()
    const sent: Array<{ start: number; id: string; counts: Counts } | null> = []
    for (const [start, bucket] of pending) {
      if (start + this.timing.bucketMs <= now - this.timing.retentionMs) continue
      const key = this.keys.bucket(start)
      for (const [id, counts] of bucket) {
        for (const kind of OUTCOME_KINDS) {
          if (counts[kind] <= 0) continue
          pipeline.hincrby(key, outcomeField(kind, id, this.node), counts[kind])
          sent.push({ start, id, counts: { ok: 0, fail: 0, refused: 0, [kind]: counts[kind] } })
        }
      }
      pipeline.pexpireat(key, start + this.timing.retentionMs + this.timing.bucketMs)
      sent.push(null)
    }
    if (sent.length === 0) return
    let results: Array<[Error | null, unknown]> | null = null
    try {
      results = await pipeline.exec()
    } catch (err) {
      this.log.debug({ err }, 'outcome flush failed; kept for the next one')
    }
    sent.forEach((item, i) => {
      if (item !== null && (results === null || results[i]?.[0]))
        this.unflushed.addToBucket(item.start, item.id, item.counts.ok, item.counts.fail, item.counts.refused)
    })
  }

  /** Read other nodes' counts: the hot buckets, or with `full` every bucket in the retention time. */
  async poll(client: RedisClient, full: boolean, now = Date.now()): Promise<void> {
    const { bucketMs, retentionMs } = this.timing
    const newest = this.own.bucketOf(now)
    const hot = Math.max(HOT_BUCKETS - 1, Math.ceil(HOT_MS / bucketMs) - 1)
    const oldest = full ? this.own.bucketOf(now - retentionMs) : newest - hot * bucketMs
    const starts: number[] = []
    const pipeline = client.pipeline()
    for (let start = newest; start >= oldest; start -= bucketMs) {
      starts.push(start)
      pipeline.hgetall(this.keys.bucket(start))
    }
    const results = await pipeline.exec()
    if (results === null) return
    starts.forEach((start, i) => {
      const [err, hash] = results[i] ?? [null, null]
      if (err !== null || hash === null || typeof hash !== 'object') return
      const counts = new Map<string, Counts>()
      for (const [field, raw] of Object.entries(hash as Record<string, string>)) {
        const f = parseOutcomeField(field)
        const n = Number(raw)
        if (f === null || f.node === this.node || !Number.isFinite(n)) continue
        const c = counts.get(f.id) ?? { ok: 0, fail: 0, refused: 0 }
        c[f.kind] += n
        counts.set(f.id, c)
      }
      this.others.replaceBucket(start, counts)
    })
    this.others.prune(now - retentionMs)
  }
}
