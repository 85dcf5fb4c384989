// Prometheus metrics of one node. Hot-path counters are label children resolved once, so counting costs an
// increment; gauges that mirror state are computed at scrape time.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { RefusalReason } from './inbound/refusal-reason'
import type { AttemptRecord } from './relay/relay'

export type MessageOutcome = 'relayed' | 'rejected' | 'deferred' | 'spooled' | 'spool_failed'

export class Metrics {
  readonly registry = new Registry()
  private readonly messages: Counter<'outcome'>
  private readonly attempts: Counter<'backend' | 'verdict' | 'stage'>
  private readonly deliveryDuration: Histogram<'backend'>
  private readonly rejected: Counter<'reason'>
  private readonly refused: Counter
  private readonly denied: Counter
  private readonly duration: Histogram<'outcome'>
  private readonly attemptChildren = new Map<string, Counter.Internal>()
  private readonly sessionWaits: Counter<'backend' | 'result'>

  constructor() {
    // Unprefixed: process_cpu_seconds_total, process_resident_memory_bytes, nodejs_* as dashboards expect them.
    collectDefaultMetrics({ register: this.registry })
    const registers = [this.registry]
    this.messages = new Counter({
      name: 'mxgate_messages_total',
      help: 'Messages whose DATA ended, by what mxgate answered: relayed (a backend took it or refused it for good), spooled, deferred (4xx), spool_failed (4xx)',
      labelNames: ['outcome'],
      registers,
    })
    this.attempts = new Counter({
      name: 'mxgate_backend_attempts_total',
      help: 'Delivery attempts per backend by verdict: delivered, backend (the backend’s fault), message (the message’s fault), ambiguous, unsupported (the backend cannot take the envelope), saturated (all of mxgate’s sessions to it busy); the last two are no one’s fault. stage: where the attempt ended (connect, banner, ehlo, starttls, mail, rcpt, data, dot; dot for a delivered one)',
      labelNames: ['backend', 'verdict', 'stage'],
      registers,
    })
    this.deliveryDuration = new Histogram({
      name: 'mxgate_backend_delivery_duration_seconds',
      help: 'Per backend, from the start of an attempt (session wait included) to the backend’s 250 at end of data, for delivered attempts',
      labelNames: ['backend'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
    this.rejected = new Counter({
      name: 'mxgate_smtp_rejected_total',
      help: 'Refusals (4xx/5xx replies) sent to SMTP senders, by reason: what Haraka refuses itself (size, syntax, bare_lf, loop, line_too_long…), mxgate’s checks before the engine (relay_denied, too_many_recipients, bad_bytes, early_talker, connection_limit, slow_data, memory, shutting_down…), and replies to a finished message (backend, spool, internal)',
      labelNames: ['reason'],
      registers,
    })
    this.sessionWaits = new Counter({
      name: 'mxgate_backend_session_waits_total',
      help: 'Deliveries that found all of mxgate’s sessions to a backend busy (backend_client.max_sessions), by how the wait ended: granted (a session came within session_wait) or saturated (it did not; another backend or the spool; never charged to the backend)',
      labelNames: ['backend', 'result'],
      registers,
    })
    this.refused = new Counter({
      name: 'mxgate_recipients_refused_total',
      help: 'Recipients a backend refused for good after mxgate accepted the message (owed a DSN)',
      registers,
    })
    this.denied = new Counter({
      name: 'mxgate_rcpt_denied_total',
      help: 'RCPT commands refused with 550 5.7.1 because the domain is not ours',
      registers,
    })
    this.duration = new Histogram({
      name: 'mxgate_message_duration_seconds',
      help: 'From end of DATA to mxgate’s reply, by outcome',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
  }

  message(outcome: MessageOutcome, seconds: number, refusedRecipients: number): void {
    this.messages.labels(outcome).inc()
    this.duration.labels(outcome).observe(seconds)
    if (refusedRecipients > 0) this.refused.inc(refusedRecipients)
  }

  attempt(a: AttemptRecord): void {
    const key = `${a.backendId}\u0000${a.verdict}\u0000${a.stage}`
    let child = this.attemptChildren.get(key)
    if (!child) {
      child = this.attempts.labels(a.backendId, a.verdict, a.stage)
      this.attemptChildren.set(key, child)
    }
    child.inc()
    if (a.verdict === 'delivered') this.deliveryDuration.labels(a.backendId).observe(a.elapsedMs / 1000)
  }

  smtpRejected(reason: RefusalReason): void {
    this.rejected.labels(reason).inc()
  }

  /** What the SMTP listener holds now (connections, clients, message memory) and has received, read at scrape time. */
  watchInbound(read: () => { connections: number; clients: number; messageMemory: number; received: number }): void {
    const registers = [this.registry]
    new Counter({
      name: 'mxgate_smtp_messages_received_total',
      help: 'Messages whose final dot arrived from a sender (before any check after DATA; refusals are in mxgate_smtp_rejected_total, answers in mxgate_messages_total)',
      registers,
      collect() {
        this.reset()
        this.inc(read().received)
      },
    })
    new Gauge({
      name: 'mxgate_smtp_connections',
      help: 'Open inbound SMTP connections (limit: smtp.max_connections)',
      registers,
      collect() {
        this.set(read().connections)
      },
    })
    new Gauge({
      name: 'mxgate_smtp_clients',
      help: 'Clients (IPv4 addresses, IPv6 /64s) with an open inbound connection',
      registers,
      collect() {
        this.set(read().clients)
      },
    })
    new Gauge({
      name: 'mxgate_smtp_message_memory_bytes',
      help: 'Message bytes held in memory across connections, DATA to reply (limit: smtp.max_message_memory)',
      registers,
      collect() {
        this.set(read().messageMemory)
      },
    })
  }

  /**
   * A reload removed the backend: every series labelled with it goes (counters, histograms, and gauges, which
   * recompute without it anyway), so dashboards do not show a backend that is not there.
   */
  async forgetBackend(backendId: string): Promise<void> {
    for (const [key] of this.attemptChildren) if (key.startsWith(`${backendId}\u0000`)) this.attemptChildren.delete(key)
    for (const metric of this.registry.getMetricsAsArray()) {
      const m = metric as unknown as {
        get(): Promise<{ values: { labels: Record<string, string | number> }[] }>
        remove(labels: Record<string, string | number>): void
      }
      const seen = new Set<string>()
      for (const v of (await m.get()).values) {
        if (v.labels.backend !== backendId) continue
        // A histogram's bucket values carry `le` on top of the labels it was observed with.
        const { le: _le, ...labels } = v.labels
        const key = JSON.stringify(labels)
        if (seen.has(key)) continue
        seen.add(key)
        m.remove(labels)
      }
    }
  }

  sessionWait(backendId: string, result: 'granted' | 'saturated'): void {
    this.sessionWaits.labels(backendId, result).inc()
  }

  rcptDenied(): void {
    this.denied.inc()
  }

  /** A counter read at scrape time from a count kept elsewhere (which only grows). */
  counter<L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    collect: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void,
  ): void {
    new Counter<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset()
        collect((labels, value) => this.inc(labels, value))
      },
    })
  }

  /** A gauge computed at scrape time from live state. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    collect: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void,
  ): void {
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset()
        collect((labels, value) => this.set(labels, value))
      },
    })
  }
}
