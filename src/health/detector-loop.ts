// Runs the detector once per outcome bucket: reads every backend's counts from the state store (summed over all
// nodes; this node's own counts alone while Redis is down), feeds the increments since the last round, and acts on
// the result through the health registry — eject, or say "would eject", "budget frozen", "pool degraded".
// Each node decides alone on the pooled evidence; the first to eject shares it and the others follow. A backend
// back in rotation is judged on buckets that began after its re-admission only.
import { EventEmitter } from 'node:events'
import type { StateStore } from '../cluster/types'
import type { Logger } from '../log'
import { type BackendView, type Counts, Detector, type DetectorSettings, type Evaluation, type Round } from './detector'
import type { BackendStatus, EjectionEvidence, HealthRegistry } from './registry'

/** Recent buckets re-read every round: other nodes' counts reach a bucket up to a few seconds after it closes. */
const HOT_BUCKETS = 3
/**
 * ...and at least this far back: the Redis store re-reads older buckets only on its full poll (every 30 s), so with
 * short buckets another node's counts can arrive that late. Counted once all the same (see `consumed`).
 */
const LATE_MS = 35_000

export interface LoopSettings {
  bucketMs: number
  retentionMs: number
}

export interface LoopEvents {
  round: [Round]
  /** An alarm that was not acted on (observe mode, budget reached, pool degraded); once per episode. */
  wouldEject: [Evaluation, 'observe' | 'budget' | 'degraded']
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`

/** The evidence in one line: what the log, the API and `mxgate status` show. */
export function describeEvidence(e: Evaluation | EjectionEvidence, now: number): string {
  const what = e.signal === 'fault' ? 'faults' : 'permanent refusals'
  const pool = e.poolRate === null ? 'n/a' : pct(e.poolRate)
  const since = e.firstFaultAt === null ? '' : `; first of them ${Math.round((now - e.firstFaultAt) / 1000)}s ago`
  return (
    `${e.faults} ${what} in ${e.messages} messages (${pct(e.faults / Math.max(1, e.messages))}; ` +
    `window ${pct(e.rate)}) vs the rest of the pool's ${pool}; ` +
    `CUSUM ${e.statistic.toFixed(1)} ≥ ${e.threshold}${since}`
  )
}

export class DetectorLoop extends EventEmitter<LoopEvents> {
  readonly detector: Detector
  private timer: NodeJS.Timeout | null = null
  /** Counts already fed, per bucket start and backend. */
  private readonly consumed = new Map<number, Map<string, Counts>>()
  private last: Round | null = null
  /** When the last round ran: buckets since then are read even if more than HOT_BUCKETS (a late timer). */
  private lastAt: number | null = null
  /** Backends with an alarm held back now: said once per episode. */
  private readonly held = new Set<string>()
  private frozenSaid = false
  private degradedSaid = false

  constructor(
    settings: DetectorSettings,
    private readonly timing: LoopSettings,
    private readonly store: StateStore,
    private readonly health: HealthRegistry,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super()
    this.detector = new Detector(settings)
    health.on('ejection', (ev: { id: string }) => this.detector.reset(ev.id))
  }

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.round(), this.timing.bucketMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /** Backends whose alarm is held back now (observe mode, budget, degraded pool). */
  wouldEjectNow(id: string): boolean {
    return this.held.has(id)
  }

  /** The last round's result (metrics, status). */
  get lastRound(): Round | null {
    return this.last
  }

  /** Counts that arrived since the last round, bucket by bucket. */
  private increments(ids: string[], now: number): Map<string, Counts> {
    const b = this.timing.bucketMs
    const newest = Math.floor(now / b) * b
    const hot = newest - Math.max(HOT_BUCKETS - 1, Math.ceil(LATE_MS / b)) * b
    const sinceLast = this.lastAt === null ? hot : Math.floor(this.lastAt / b) * b
    const oldest = Math.max(Math.min(hot, sinceLast), newest - Math.floor(this.timing.retentionMs / b) * b)
    this.lastAt = now
    const out = new Map<string, Counts>()
    for (let start = oldest; start <= newest; start += b) {
      const seen = this.consumed.get(start) ?? new Map<string, Counts>()
      this.consumed.set(start, seen)
      for (const id of ids) {
        // A window of 0 at the bucket's start reads exactly that bucket.
        const c = this.store.pooledOutcomes(id, 0, start)
        const had = seen.get(id) ?? { ok: 0, fail: 0, refused: 0 }
        const d = {
          ok: Math.max(0, c.ok - had.ok),
          fail: Math.max(0, c.fail - had.fail),
          refused: Math.max(0, c.refused - had.refused),
        }
        seen.set(id, {
          ok: Math.max(c.ok, had.ok),
          fail: Math.max(c.fail, had.fail),
          refused: Math.max(c.refused, had.refused),
        })
        // A bucket that began before the backend's re-admission holds the last episode's evidence, which can arrive
        // late (counts a node kept through a Redis outage): already acted on, it must not eject the backend again.
        if (start < this.health.returnedAt(id)) continue
        const acc = out.get(id) ?? { ok: 0, fail: 0, refused: 0 }
        out.set(id, { ok: acc.ok + d.ok, fail: acc.fail + d.fail, refused: acc.refused + d.refused })
      }
    }
    for (const start of this.consumed.keys()) if (start < hot) this.consumed.delete(start)
    return out
  }

  /** One evaluation; public so tests can drive it without waiting for the timer. */
  round(now = this.now()): Round {
    const statuses = this.health.statuses()
    const ids = statuses.map((s) => s.id)
    const inc = this.increments(ids, now)
    const window = new Map<string, Counts>()
    for (const id of ids) window.set(id, this.store.pooledOutcomes(id, this.timing.retentionMs, now))
    const out = new Set(this.health.outByDetector())
    const views: BackendView[] = statuses.map((s: BackendStatus) => ({
      id: s.id,
      inRotation: s.manual === null && (s.state === 'admitted' || s.state === 'probation'),
      probation: s.state === 'probation',
      outByDetector: out.has(s.id),
    }))
    const round = this.detector.step(now, inc, window, views)
    this.last = round
    this.act(round, now)
    this.emit('round', round)
    return round
  }

  private act(round: Round, now: number): void {
    const observe = this.detector.settings.mode === 'observe'
    for (const e of round.eject) {
      const text = describeEvidence(e, now)
      const evidence: EjectionEvidence = {
        signal: e.signal,
        faults: e.faults,
        messages: e.messages,
        rate: e.rate,
        poolRate: e.poolRate,
        statistic: e.statistic,
        threshold: e.threshold,
        firstFaultAt: e.firstFaultAt,
      }
      this.health.ejectByDetector(e.id, e.reason, text, evidence)
    }
    const heldNow = new Set(round.wouldEject.map((e) => e.id))
    for (const id of this.held) if (!heldNow.has(id)) this.held.delete(id)
    for (const e of round.wouldEject) {
      if (this.held.has(e.id)) continue
      this.held.add(e.id)
      const why = observe ? 'observe' : round.degraded ? 'degraded' : 'budget'
      this.log.warn(
        { backend: e.id, detector: e, why },
        `detector would eject ${e.id} (${why === 'observe' ? 'observe mode' : why === 'degraded' ? 'pool degraded' : 'ejection budget reached'}): ${describeEvidence(e, now)}`,
      )
      this.emit('wouldEject', e, why)
    }
    if (round.frozen !== this.frozenSaid) {
      this.frozenSaid = round.frozen
      if (round.frozen)
        this.log.error(
          { budget: round.budget, out: this.health.outByDetector() },
          `detector budget reached (${round.budget} backend(s) out): no further automatic ejection; failover and the spool carry the mail`,
        )
      else {
        // Frozen means an alarm is held back; it ends when that alarm clears, not only when the budget frees up.
        const out = this.health.outByDetector()
        this.log.info(
          { budget: round.budget, out },
          out.length < round.budget
            ? `detector budget free again (${out.length} of ${round.budget} out)`
            : `no alarm held back by the detector budget any more (${out.length} of ${round.budget} out)`,
        )
      }
    }
    if (round.degraded !== this.degradedSaid) {
      this.degradedSaid = round.degraded
      if (round.degraded)
        this.log.error(
          { poolRate: round.poolRate },
          `pool degraded: most backends fail at least ${pct(this.detector.settings.degradedRate)} (pool ${pct(round.poolRate)}); nobody is ejected by the detector`,
        )
      else this.log.info({ poolRate: round.poolRate }, 'pool no longer degraded')
    }
  }
}
