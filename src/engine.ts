// The composition root: builds clients, health, pool and relay from one config. Haraka-free, so tests, the
// demo and the benchmark can run the same engine the plugin runs.
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { BackendClient, type ClientOptions } from './backend/client'
import { registerCanaryMetrics } from './canary/metrics'
import { CanaryScheduler, describeCanaryEvidence } from './canary/scheduler'
import { createStateStore, type IpcChannel, type StateStore } from './cluster'
import { journalDir } from './config/load'
import { configVersion, type ReloadPlan } from './config/reload-plan'
import type { BackendConfig, MxgateConfig } from './config/schema'
import { registerDetectorMetrics } from './detector-metrics'
import { CANARY_JUDGE_DEFAULTS, type CanaryEvidence, CanaryJudge } from './health/canary-judge'
import { DetectorLoop } from './health/detector-loop'
import { OutcomeHistory } from './health/outcome-history'
import { type BackendStatus, HealthRegistry } from './health/registry'
import { StateLog } from './health/state-log'
import { Journal } from './journal/journal'
import { registerJournalMetrics } from './journal/metrics'
import { type Logger, partLogger } from './log'
import type { InboundMessage } from './message'
import { Metrics } from './metrics'
import { BackendPool } from './pool/picker'
import { Acceptor, type AcceptResult } from './relay/accept'
import { BounceSender } from './relay/bounce'
import { Relay } from './relay/relay'
import { SpoolRunner } from './relay/spool-runner'
import { SpoolStore } from './spool/store'
import { registerStateMetrics } from './state-metrics'
import { VerdictCache } from './verify/cache'
import { HarvestGuard } from './verify/harvest'
import { VerifyMetrics } from './verify/metrics'
import { RecipientRoutes } from './verify/policy'
import { RecipientCheck } from './verify/recipient-check'
import { RedisVerdicts } from './verify/redis-verdicts'
import { Verifier } from './verify/verifier'

/** How often a removed backend's in-flight count is looked at, and how long past the relay deadline it may take. */
const RETIRE_POLL_MS = 50
const RETIRE_MARGIN_MS = 5_000

export function clientOptions(cfg: MxgateConfig): ClientOptions {
  return {
    heloName: cfg.smtp.hostname,
    timeouts: { ...cfg.client.timeouts },
    maxSessions: cfg.client.maxSessions,
    sessionWaitMs: cfg.client.sessionWaitMs,
    maxMessagesPerSession: cfg.client.maxMessagesPerSession,
    idleTimeoutMs: cfg.client.idleTimeoutMs,
    starttls: cfg.client.starttls,
    // required = encrypt and verify; opportunistic encrypts without verifying (RFC 7435). The CA file was checked
    // at config load; it is read once here (a new CA takes a restart).
    tls: {
      rejectUnauthorized: cfg.client.starttls === 'required',
      ...(cfg.client.tlsCa !== null ? { ca: readFileSync(cfg.client.tlsCa) } : {}),
      ...(cfg.client.tlsServername !== null ? { servername: cfg.client.tlsServername } : {}),
    },
  }
}

function workerChannel(): IpcChannel {
  return {
    send: (m) => process.send?.(m),
    on: (_e, fn) => process.on('message', fn),
    off: (_e, fn) => process.off('message', fn),
  }
}

export class Engine {
  readonly clients = new Map<string, BackendClient>()
  readonly health: HealthRegistry
  readonly detector: DetectorLoop
  readonly store: StateStore
  readonly pool: BackendPool
  readonly relay: Relay
  readonly spool: SpoolStore
  readonly acceptor: Acceptor
  readonly bounces: BounceSender
  readonly runner: SpoolRunner
  /** What backends took, for replay (README "The replay journal"). */
  readonly journal: Journal
  /** End-to-end canaries; null when canary.address is not set. */
  readonly canaries: CanaryScheduler | null
  readonly log: Logger
  readonly node: string
  readonly metrics = new Metrics()
  /** For the status page: outcome counts over the last half hour, and the last state changes. */
  readonly history: OutcomeHistory
  readonly stateLog = new StateLog()
  /** Recipient verification at RCPT; null when verify.enabled is off. */
  readonly recipients: RecipientCheck | null = null
  readonly verifier: Verifier | null = null
  readonly verifyMetrics: VerifyMetrics | null = null
  private readonly sharedVerdicts: RedisVerdicts | null = null
  /** True once the spool finished recovery (readiness and gauges wait for it). */
  spoolOpen = false

  constructor(
    readonly config: MxgateConfig,
    /** Tests pass a fixed random source to make the pool's choice predictable, and a node name to run two nodes. */
    options: { random?: () => number; node?: string } = {},
  ) {
    this.node = options.node ?? `${hostname()}:${process.pid}`
    this.log = partLogger('engine')
    const opts = clientOptions(config)
    this.clientOpts = opts
    for (const b of config.backends) this.addClient(b)
    this.store = createStateStore({
      url: config.redis.url,
      prefix: config.redis.prefix,
      logger: partLogger('cluster'),
      timing: { bucketMs: config.detector.bucketMs, retentionMs: config.detector.retentionMs },
      ...(options.node === undefined ? {} : { node: options.node }),
      // Haraka workers without Redis share state through the master process.
      ...(cluster.isWorker ? { ipc: workerChannel() } : {}),
    })
    this.health = new HealthRegistry(config.backends, config.breaker, {
      probe: (id, deadlineAt) => this.client(id).probe(deadlineAt),
      store: this.store,
      log: partLogger('health'),
      suspicion: (id, probation) => this.detector.detector.suspect(id, probation),
      probationReturns: config.canary.address === null ? 0 : config.canary.probationReturns,
    })
    this.health.on('state', (s: BackendStatus) => this.stateLog.note(s))
    this.history = new OutcomeHistory(this.store, () => this.health.ids(), {
      bucketMs: config.detector.bucketMs,
      retentionMs: config.detector.retentionMs,
    })
    this.detector = new DetectorLoop(config.detector, config.detector, this.store, this.health, partLogger('detector'))
    this.pool = new BackendPool(config.backends, this.health, options.random)
    this.relay = new Relay({
      clients: this.clients,
      pool: this.pool,
      health: this.health,
      settings: config.relay,
      log: partLogger('relay'),
      observe: (a) => this.metrics.attempt(a),
    })
    const sp = config.spool
    this.spool = new SpoolStore(
      {
        dir: sp.dir,
        maxMessages: sp.maxMessages,
        maxBytes: sp.maxBytes,
        minFreeBytes: sp.minFreeBytes,
        fsync: sp.fsync,
      },
      partLogger('spool'),
    )
    this.journal = new Journal(
      {
        ...config.journal,
        dir: journalDir(config),
        fsync: sp.fsync,
        reserveBytes: sp.minFreeBytes,
        reserveDir: sp.dir,
      },
      partLogger('journal'),
    )
    // The one place the journal is wired: inline deliveries (acceptor) and spool deliveries (runner) report to it.
    const journalPort = config.journal.enabled ? this.journal : null
    this.acceptor = new Acceptor(this.relay, this.spool, sp.retryFirstMs, partLogger('relay'), journalPort)
    // The smarthost is not a backend: its certificate is checked against its own host name, not tls_servername.
    const { servername: _backendsName, ...smarthostTls } = opts.tls
    const bounceOpts = { ...opts, tls: smarthostTls }
    this.bounces = new BounceSender(sp.bounceRelay, bounceOpts, config.smtp.hostname, partLogger('bounce'))
    this.runner = new SpoolRunner({
      spool: this.spool,
      relay: this.relay,
      bounces: this.bounces,
      settings: sp,
      log: partLogger('spool'),
      owner: this.node,
      // Haraka workers share one spool directory.
      shared: config.smtp.workers > 0,
      journal: journalPort,
    })
    const v = config.verify
    if (v.enabled) {
      this.sharedVerdicts =
        config.redis.url === null
          ? null
          : new RedisVerdicts(config.redis.url, config.redis.prefix, partLogger('verify'))
      const cache = new VerdictCache(
        { size: v.cacheSize, positiveTtlMs: v.positiveTtlMs, negativeTtlMs: v.negativeTtlMs },
        this.sharedVerdicts,
      )
      const metrics = new VerifyMetrics(this.metrics.registry, () => cache.entries)
      this.verifyMetrics = metrics
      this.verifier = new Verifier({
        clients: this.clients,
        pool: this.pool,
        health: this.health,
        cache,
        settings: { sender: v.sender, timeoutMs: v.timeoutMs, maxAttempts: config.relay.maxAttempts },
        log: partLogger('verify'),
        observe: { cache: (tier) => metrics.cache(tier), dialogue: (r, s) => metrics.dialogue(r, s) },
      })
      this.recipients = new RecipientCheck(
        new RecipientRoutes({ skipDomains: v.skipDomains, staticRecipients: v.staticRecipients }),
        this.verifier,
        new HarvestGuard({ limit: v.harvestLimit, windowMs: v.harvestWindowMs }),
        { onTimeout: v.onTimeout, harvestWindowMs: v.harvestWindowMs },
      )
    }
    this.canaries = this.buildCanaries()
    this.configVersion = configVersion(config)
    registerStateMetrics(this)
    registerJournalMetrics(this.metrics, () => this.journal.counters())
    registerDetectorMetrics(this)
    // The id list is read at each scrape: a reload adds and removes backends.
    registerCanaryMetrics(this.metrics.registry, this.canaries, () => this.health.ids())
    // A backend coming back is the moment to drain the spool (the runner rate-limits itself).
    this.health.on('state', (s: { state: string }) => {
      if (s.state === 'probation' || s.state === 'admitted') this.runner.drain()
    })
  }

  /** The canary scheduler and its ports into health and the backend clients (never the relay or the breaker). */
  private buildCanaries(): CanaryScheduler | null {
    const k = this.config.canary
    if (k.address === null) return null
    const judge = new CanaryJudge({ ...CANARY_JUDGE_DEFAULTS, roundMs: k.intervalMs })
    const health = this.health
    const scheduler = new CanaryScheduler(
      {
        address: k.address,
        intervalMs: k.intervalMs,
        timeoutMs: k.timeoutMs,
        sendDeadlineMs: this.config.relay.deadlineMs,
        hostname: this.config.smtp.hostname,
      },
      judge,
      {
        backends: () =>
          health.statuses().map((s) => ({
            id: s.id,
            inRotation: s.manual === null && (s.state === 'admitted' || s.state === 'probation'),
          })),
        send: (id, envelope, body, deadlineAt) => this.client(id).deliverFresh(envelope, body, deadlineAt),
        eject: (id, evidence) => this.ejectForCanaries(id, evidence),
        returned: (id) => health.canaryReturned(id),
        shared: {
          sent: (token, ttlMs) => this.store.canarySent(token, ttlMs),
          returned: (token, at, ttlMs) => this.store.canaryReturned(token, at, ttlMs),
          returnOf: async (token, since) => {
            const at = await this.store.canaryReturnOf(token)
            // Not found, but the store was away meanwhile: another node may still hold the return it could not share.
            if (at === null && (this.storeSteadySince === null || this.storeSteadySince > since)) return undefined
            return at
          },
        },
        log: partLogger('canary'),
      },
    )
    health.on('ejection', (ev: { id: string }) => scheduler.ejected(ev.id))
    this.store.on('up', () => {
      this.storeSteadySince = Date.now()
    })
    this.store.on('down', () => {
      this.storeSteadySince = null
    })
    // A return that reached another node or worker: the one that sent it counts it.
    this.store.on('canaryReturn', (note) => scheduler.returnedElsewhere(note.token, note.at))
    return scheduler
  }

  /** Since when the state store has been reachable without a break; null while it is not (canary judgement). */
  private storeSteadySince: number | null = null

  /** Canary evidence goes through the detector's rules: observe mode only reports, the budget holds. */
  private ejectForCanaries(id: string, evidence: CanaryEvidence): { ejected: true } | { ejected: false; why: string } {
    const d = this.config.detector
    if (d.mode === 'observe') return { ejected: false, why: 'observe mode' }
    const budget = Math.max(1, Math.floor(this.health.ids().length * d.budgetShare))
    const out = this.health.outByDetector().length
    if (out >= budget) return { ejected: false, why: `ejection budget reached (${out} of ${budget} out)` }
    const { rule: _rule, ...shared } = evidence
    const ok = this.health.ejectByDetector(id, 'canary', describeCanaryEvidence(evidence), shared)
    return ok ? { ejected: true } : { ejected: false, why: 'not in rotation' }
  }

  private readonly clientOpts: ClientOptions
  /** Backends a reload removed whose messages in flight are still finishing. */
  readonly retiring = new Map<string, BackendConfig>()

  private addClient(b: BackendConfig): void {
    const opts = this.clientOpts
    const endpoint = { id: b.id, host: b.host, port: b.port }
    const observe = (id: string, result: 'granted' | 'saturated') => this.metrics.sessionWait(id, result)
    const own = b.servername !== undefined ? { ...opts, tls: { ...opts.tls, servername: b.servername } } : opts
    this.clients.set(b.id, new BackendClient(endpoint, own, partLogger('backend'), observe))
  }

  /** A backend's settings, a retiring one's included. */
  backendConfig(id: string): BackendConfig | undefined {
    return this.config.backends.find((b) => b.id === id) ?? this.retiring.get(id)
  }

  /**
   * Applies a validated reload plan in place: every part reads these settings when it uses them, so the next
   * message, check or round sees the new values. Resolves when removed backends have finished their messages.
   */
  async reconfigure(next: MxgateConfig, plan: ReloadPlan): Promise<void> {
    const live = this.config as unknown as Record<string, Record<string, unknown>>
    for (const c of plan.live) {
      const [section = '', key = ''] = c.key.split('.')
      const target = live[section]
      if (target) target[key] = structuredClone(c.to)
    }
    this.config.files = next.files
    for (const r of plan.reweighted) {
      this.pool.setWeight(r.id, r.to)
      const b = this.config.backends.find((x) => x.id === r.id)
      if (b) b.weight = r.to
    }
    for (const b of plan.added) {
      this.config.backends.push(structuredClone(b))
      this.addClient(b)
      this.health.addBackend(b.id)
      this.pool.add(b)
    }
    const retiring = plan.removed.map((id) => this.retire(id))
    this.health.retune()
    this.spool.setLimits(this.config.spool)
    this.configVersion = configVersion(this.config)
    await Promise.all(retiring)
  }

  /** Version of the settings this node runs (see configVersion); changes with each reload that changes something. */
  configVersion: string

  /**
   * A removed backend gets no new message at once; its messages in flight finish (each is bounded by the relay
   * deadline), then its client, health and metric series go. Spooled mail was never tied to it: the others take it.
   */
  private async retire(id: string): Promise<void> {
    const b = this.config.backends.find((x) => x.id === id)
    if (!b) return
    this.config.backends = this.config.backends.filter((x) => x.id !== id)
    this.retiring.set(id, b)
    this.pool.remove(id)
    this.log.info({ backend: id, inFlight: this.pool.inFlightOf(id) }, `backend ${id} removed: finishing its messages`)
    const until = Date.now() + this.config.relay.deadlineMs + RETIRE_MARGIN_MS
    while (this.pool.inFlightOf(id) > 0 && Date.now() < until) await sleep(RETIRE_POLL_MS)
    this.health.removeBackend(id)
    this.pool.forget(id)
    this.detector.detector.forget(id)
    this.canaries?.forget(id)
    await this.metrics.forgetBackend(id)
    const client = this.clients.get(id)
    this.clients.delete(id)
    this.retiring.delete(id)
    await client?.close()
    this.log.info({ backend: id }, `backend ${id} retired`)
  }

  private inFlightCount = 0

  /** Relays one message (spooling it when no backend takes it); counted so a shutdown can wait for it. */
  async accept(msg: InboundMessage): Promise<AcceptResult> {
    this.inFlightCount++
    const started = performance.now()
    try {
      const result = await this.acceptor.accept(msg)
      const outcome =
        result.outcome === 'spooled'
          ? 'spooled'
          : result.outcome === 'spool-failed'
            ? 'spool_failed'
            : result.relay.outcome === 'delivered'
              ? 'relayed'
              : result.relay.outcome
      this.metrics.message(outcome, (performance.now() - started) / 1000, result.relay.refused.length)
      this.noteSpoolEpisode(result)
      return result
    } finally {
      this.inFlightCount--
    }
  }

  private spoolTrouble: string | null = null

  /** Says once when the spool starts refusing mail (full, disk error) and once when it takes mail again. */
  private noteSpoolEpisode(result: AcceptResult): void {
    if (result.outcome === 'spool-failed' && this.spoolTrouble === null) {
      this.spoolTrouble = result.error.message
      this.log.error(
        { err: result.error, spool: this.config.spool.dir },
        `spool refuses mail (senders get 451 and retry; /readyz fails): ${result.error.message}`,
      )
    } else if (result.outcome === 'spooled' && this.spoolTrouble !== null) {
      this.log.warn({ was: this.spoolTrouble }, 'spool takes mail again')
      this.spoolTrouble = null
    }
  }

  get inFlight(): number {
    return this.inFlightCount
  }

  private client(id: string): BackendClient {
    const c = this.clients.get(id)
    if (!c) throw new Error(`no client for backend ${id}`)
    return c
  }

  /** Publishes this node's config version in the state store (with Redis, every node's `mxgate status` shows it). */
  async announce(): Promise<void> {
    this.store.announce(this.configVersion)
  }

  /** Connects the shared state store (never fails because Redis is down: the node then runs on local state). */
  async start(): Promise<void> {
    await this.store.start()
    this.sharedVerdicts?.start()
    await this.announce()
    await this.spool.open()
    this.spoolOpen = true
    // Never fails: a journal that cannot open is degraded (logged, counted), the mail path does not depend on it.
    await this.journal.open()
    this.runner.start()
    // Mail spooled before a restart should not wait out its retry interval when a backend can take it now; with
    // none admitted yet, the first admission drains it (above).
    if (this.health.ids().some((id) => this.health.admission(id).allowed)) this.runner.drain()
    this.detector.start()
    this.history.start()
    this.canaries?.start()
  }

  async close(): Promise<void> {
    this.canaries?.stop()
    this.detector.stop()
    this.history.stop()
    await this.runner.stop()
    await this.journal.close()
    if (this.spoolOpen) await this.spool.close()
    this.health.close()
    await this.store.stop()
    this.sharedVerdicts?.stop()
    await this.bounces.close()
    await Promise.all([...this.clients.values()].map((c) => c.close()))
  }
}
