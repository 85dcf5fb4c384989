// Prometheus metrics of recipient verification. Labels are bounded: results and sources are fixed sets.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { CacheTier } from './cache'
import type { Decision } from './recipient-check'

export class VerifyMetrics {
  private readonly decisions: Counter<'result' | 'source'>
  private readonly hits: Counter<'tier'>
  private readonly misses: Counter
  private readonly latency: Histogram<'result'>
  private readonly cutoffs: Counter

  constructor(registry: Registry, cacheEntries: () => number) {
    const registers = [registry]
    this.decisions = new Counter({
      name: 'mxgate_verify_total',
      help: 'Recipients checked at RCPT, by result (known, unknown, undecided: a backend refused otherwise and delivery decides, unavailable: no backend answered in time) and source (backend, memory or shared cache, static list, skipped domain)',
      labelNames: ['result', 'source'],
      registers,
    })
    this.hits = new Counter({
      name: 'mxgate_verify_cache_hits_total',
      help: 'Recipient checks answered from the verdict cache, by tier: memory (this process) or shared (Redis)',
      labelNames: ['tier'],
      registers,
    })
    this.misses = new Counter({
      name: 'mxgate_verify_cache_misses_total',
      help: 'Recipient checks the verdict cache could not answer (a backend was asked)',
      registers,
    })
    this.latency = new Histogram({
      name: 'mxgate_verify_duration_seconds',
      help: 'Recipient checks that asked backends: from the first question to the answer, by result',
      labelNames: ['result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    this.cutoffs = new Counter({
      name: 'mxgate_verify_harvest_cutoffs_total',
      help: 'RCPT commands answered 421 and disconnected because the client passed verify.harvest_limit unknown recipients',
      registers,
    })
    new Gauge({
      name: 'mxgate_verify_cache_entries',
      help: 'Verdicts held in this process’s memory (limit verify.cache_size)',
      registers,
      collect() {
        this.set(cacheEntries())
      },
    })
  }

  /** Label children resolved once: counting a decision on the RCPT path costs an increment. */
  private readonly children = new Map<string, Counter.Internal>()

  decided(d: Decision): void {
    const key = `${d.result}\u0000${d.source}`
    let child = this.children.get(key)
    if (child === undefined) {
      child = this.decisions.labels(d.result, d.source)
      this.children.set(key, child)
    }
    child.inc()
    if (d.action === 'cutoff') this.cutoffs.inc()
  }

  cache(tier: CacheTier | null): void {
    if (tier === null) this.misses.inc()
    else this.hits.labels(tier).inc()
  }

  dialogue(result: string, seconds: number): void {
    this.latency.labels(result).observe(seconds)
  }
}
