// The canaries' own metrics: the only place a canary is counted (never in mxgate_messages_total or the backend
// attempt counters). Labels are backend ids from the config: bounded.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { CanaryScheduler } from './scheduler'

export function registerCanaryMetrics(registry: Registry, canaries: CanaryScheduler | null, ids: () => string[]): void {
  const registers = [registry]
  const sent = new Counter({
    name: 'mxgate_canary_sent_total',
    help: 'Canaries a backend accepted with 250 (they are then on their way back)',
    labelNames: ['backend'],
    registers,
  })
  const returned = new Counter({
    name: 'mxgate_canary_returned_total',
    help: 'Canaries whose token came back (SMTP to canary.return_address, or the webhook) within canary.timeout',
    labelNames: ['backend'],
    registers,
  })
  const lost = new Counter({
    name: 'mxgate_canary_lost_total',
    help: 'Canaries a backend accepted with 250 that did not come back within canary.timeout (lost after 250)',
    labelNames: ['backend'],
    registers,
  })
  const unjudged = new Counter({
    name: 'mxgate_canary_unjudged_total',
    help: 'Canaries past canary.timeout while the state store could not say whether another node got them back: neither returned nor lost',
    labelNames: ['backend'],
    registers,
  })
  const failed = new Counter({
    name: 'mxgate_canary_failed_total',
    help: 'Canaries a backend did not take with 250 (refused, timed out, connection failed)',
    labelNames: ['backend'],
    registers,
  })
  const unknown = new Counter({
    name: 'mxgate_canary_unknown_returns_total',
    help: 'Returned canary tokens no node was waiting for (no node sent it, or it came back again or late)',
    registers,
  })
  const rtt = new Histogram({
    name: 'mxgate_canary_round_trip_seconds',
    help: 'From a backend’s 250 for a canary to its token coming back',
    labelNames: ['backend'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers,
  })
  new Gauge({
    name: 'mxgate_canary_last_round_trip_seconds',
    help: 'The last canary round trip per backend (250 → token back)',
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset()
      for (const id of ids()) {
        const ms = canaries?.view(id).lastRoundTripMs
        if (ms != null) this.set({ backend: id }, ms / 1000)
      }
    },
  })
  new Gauge({
    name: 'mxgate_canary_pending',
    help: 'Canaries on their way back per backend',
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset()
      if (canaries) for (const id of ids()) this.set({ backend: id }, canaries.view(id).pending)
    },
  })
  // Zeroes from the start, so rate() and increase() see the first loss.
  if (canaries) for (const id of ids()) for (const c of [sent, returned, lost, unjudged, failed]) c.labels(id).inc(0)
  if (!canaries) return
  canaries.on('sent', (id) => sent.labels(id).inc())
  canaries.on('returned', (id, ms) => {
    returned.labels(id).inc()
    rtt.labels(id).observe(ms / 1000)
  })
  canaries.on('lost', (id) => lost.labels(id).inc())
  canaries.on('unjudged', (id) => unjudged.labels(id).inc())
  canaries.on('failed', (id) => failed.labels(id).inc())
  canaries.on('unknown', () => unknown.inc())
}
