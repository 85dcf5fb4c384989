// The admin port of a running node: what the admin API reads and changes, answered from the engine.
import {
  type Actor,
  type AdminPort,
  type BackendView,
  type CanaryReturnView,
  type DetectorView,
  type HistoryView,
  type JournalListView,
  JournalOffError,
  MessageBusyError,
  type NodeView,
  NotReadyError,
  ReloadRefusedError,
  type ReloadView,
  type ReplayRequestView,
  type ReplayView,
  type SpoolItemView,
  type StatusView,
  UnknownIdError,
} from './admin/types'
import { formatHostPort } from './config/units'
import type { Engine } from './engine'
import type { FoundEntry } from './journal/reader'
import { SpoolBusyError } from './relay/spool-runner'
import type { SpoolEntry } from './spool/format'

function itemView(e: SpoolEntry): SpoolItemView {
  const last = e.lastErrors.at(-1)
  return {
    id: e.id,
    from: e.from,
    to: [...e.to],
    pending: [...e.pending],
    receivedAt: e.receivedAt,
    attempts: e.attempts,
    nextAttemptAt: e.nextAttemptAt,
    held: e.held,
    size: e.size,
    lastError: last ? `${last.backendId}: ${last.message}` : null,
  }
}

export class NodeAdmin implements AdminPort {
  shuttingDown = false
  /** False until Haraka's SMTP listener is bound: the load balancer must not send before. */
  smtpListening = false

  constructor(
    private readonly engine: Engine,
    /** Re-reads and applies the settings (the launcher's Reloader); absent where nothing can be re-read. */
    private readonly reloader?: (by: string) => Promise<ReloadView>,
  ) {
    // Readiness as a metric too, for the "node not ready" alert; registered once per engine (tests build several
    // admin ports over one engine; a node has one).
    if (!engine.metrics.registry.getSingleMetric('mxgate_ready')) {
      engine.metrics.gauge(
        'mxgate_ready',
        '1 while /readyz answers 200 (the load balancer sends mail here)',
        [],
        (set) => set({}, this.readiness().ready ? 1 : 0),
      )
    }
  }

  get nodeName(): string {
    return this.engine.node
  }

  get configVersion(): string {
    return this.engine.configVersion
  }

  nodes(): NodeView[] {
    return this.engine.store.nodes().map((n) => ({ node: n.node, configVersion: n.configVersion, at: n.at }))
  }

  async reload(actor: Actor): Promise<ReloadView> {
    if (this.reloader === undefined) {
      throw new ReloadRefusedError('this node cannot re-read its configuration: it was not started by `mxgate start`')
    }
    return await this.reloader(actor.by)
  }

  get metrics() {
    return this.engine.metrics.registry
  }

  private known(id: string): void {
    if (!this.engine.health.has(id)) throw new UnknownIdError('backend', id, this.engine.health.ids())
  }

  backends(): BackendView[] {
    return this.engine.health.ids().map((id) => this.backend(id))
  }

  backend(id: string): BackendView {
    this.known(id)
    const s = this.engine.health.status(id)
    const cfg = this.engine.backendConfig(id)!
    const retiring = this.engine.retiring.has(id)
    const m = s.manual
    const attempts = s.recent.ok + s.recent.fail
    return {
      id,
      address: formatHostPort(cfg),
      weight: cfg.weight,
      state: retiring ? 'draining' : m ? (m.state === 'ejected' ? 'manual-ejected' : 'draining') : s.state,
      reason: retiring ? 'removed by a reload; its messages in flight are finishing' : m ? m.reason : s.reason,
      since: m ? m.at : s.since,
      until: m ? m.until : s.until,
      by: m ? m.by : null,
      inFlight: this.engine.pool.inFlightOf(id),
      successRatio: attempts > 0 ? s.recent.ok / attempts : null,
      messagesPerMinute: attempts / (s.recent.spanMs / 60_000),
      detector: this.detectorView(id),
      ...(this.engine.canaries ? { canary: this.engine.canaries.view(id) } : {}),
    }
  }

  canaryReturned(token: string): CanaryReturnView {
    return this.engine.canaries?.returned(token) ?? { kind: 'off' }
  }

  private detectorView(id: string): DetectorView {
    const e = this.engine
    const s = e.health.status(id)
    const c = e.store.pooledOutcomes(id, e.config.detector.retentionMs)
    const n = c.ok + c.fail
    const round = e.detector.lastRound
    const fault = round?.evaluations.find((v) => v.id === id && v.signal === 'fault')
    const probation = s.state === 'probation'
    return {
      ejectedBy: s.manual?.state === 'ejected' ? 'operator' : s.ejectedBy,
      evidence: s.evidence,
      statistic: {
        fault: e.detector.detector.statistic(id, 'fault'),
        refusal: e.detector.detector.statistic(id, 'refusal'),
      },
      threshold: probation ? e.config.detector.probationThreshold : e.config.detector.threshold,
      faultRatio: n > 0 ? c.fail / n : null,
      refusalRatio: n > 0 ? c.refused / n : null,
      poolFaultRatio: fault?.poolRate ?? null,
      suspect: e.health.suspect(id),
      wouldEject: e.detector.wouldEjectNow(id),
      mode: e.config.detector.mode,
      poolDegraded: round?.degraded ?? false,
      budgetFrozen: round?.frozen ?? false,
    }
  }

  async eject(id: string, reason: string, forMs: number | null, actor: Actor): Promise<BackendView> {
    this.known(id)
    await this.engine.health.eject(id, reason, forMs, actor.by)
    return this.backend(id)
  }

  async drain(id: string, reason: string, actor: Actor): Promise<BackendView> {
    this.known(id)
    await this.engine.health.drain(id, reason, actor.by)
    return this.backend(id)
  }

  async restore(id: string, actor: Actor): Promise<BackendView> {
    this.known(id)
    await this.engine.health.restore(id, actor.by)
    return this.backend(id)
  }

  healthy(): boolean {
    return true
  }

  readiness() {
    const reasons: string[] = []
    if (this.shuttingDown) reasons.push('shutting down')
    if (!this.engine.spoolOpen) reasons.push('recovering: the spool is being read back')
    else {
      const st = this.engine.spool.stats()
      if (st.full) reasons.push(`spool full: ${st.reason ?? 'a limit is reached'}`)
    }
    if (!this.smtpListening && !this.shuttingDown) reasons.push('SMTP listener not bound yet')
    return { ready: reasons.length === 0, reasons }
  }

  status(): StatusView {
    const e = this.engine
    const round = e.detector.lastRound
    let spool: StatusView['spool'] = {
      open: false,
      messages: 0,
      bytes: 0,
      held: 0,
      full: false,
      oldestReceivedAt: null,
    }
    if (e.spoolOpen) {
      const st = e.spool.stats()
      let oldest: number | null = null
      let held = 0
      for (const m of e.spool.list()) {
        if (oldest === null || m.receivedAt < oldest) oldest = m.receivedAt
        if (m.held) held++
      }
      spool = { open: true, messages: st.messages, bytes: st.bytes, held, full: st.full, oldestReceivedAt: oldest }
    }
    return {
      node: this.nodeName,
      now: Date.now(),
      backends: this.backends(),
      readiness: this.readiness(),
      spool,
      redis: { configured: e.config.redis.url !== null, up: e.store.up },
      detector: {
        mode: e.config.detector.mode,
        poolDegraded: round?.degraded ?? false,
        budgetFrozen: round?.frozen ?? false,
      },
    }
  }

  history(windowMs: number): HistoryView {
    const now = Date.now()
    const series = this.engine.history.series(windowMs, now)
    return { node: this.nodeName, now, ...series, events: this.engine.stateLog.since(series.from) }
  }

  private entry(id: string): SpoolEntry {
    this.recovered()
    const e = this.engine.spool.get(id)
    if (!e)
      throw new UnknownIdError(
        'message',
        id,
        this.engine.spool
          .list()
          .slice(0, 20)
          .map((x) => x.id),
      )
    return e
  }

  /** Changes a spooled message only while holding its claim, so no delivery (on any process) races the change. */
  private async whileClaimed<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.entry(id)
    const claim = await this.engine.spool.claim(id, this.engine.node)
    if (!claim) throw new MessageBusyError(id)
    try {
      return await fn()
    } finally {
      await this.engine.spool.release(claim)
    }
  }

  /** Spool reads and changes wait for recovery (the admin API is up before it, for the probes). */
  private recovered(): void {
    if (!this.engine.spoolOpen) throw new NotReadyError('the spool is still being recovered; try again in a moment')
  }

  readonly spool = {
    list: (): SpoolItemView[] => {
      this.recovered()
      return this.engine.spool.list().map(itemView)
    },
    show: (id: string) => {
      const e = this.entry(id)
      return { ...itemView(e), lastErrors: e.lastErrors.map((x) => ({ ...x })) }
    },
    flush: async (id: string | undefined, _actor: Actor): Promise<number> => {
      this.recovered()
      if (id !== undefined) this.entry(id)
      return this.engine.runner.flush(id)
    },
    hold: async (id: string, _actor: Actor): Promise<SpoolItemView> =>
      itemView(await this.whileClaimed(id, () => this.engine.spool.update(id, { held: true }))),
    release: async (id: string, _actor: Actor): Promise<SpoolItemView> => {
      const e = await this.whileClaimed(id, () =>
        this.engine.spool.update(id, { held: false, nextAttemptAt: Date.now() }),
      )
      this.engine.runner.wake()
      return itemView(e)
    },
    bounce: async (id: string, actor: Actor): Promise<void> => {
      this.entry(id)
      // The runner claims it first and then reads its newest envelope: what another process delivered meanwhile
      // is not reported as failed. A claim held elsewhere means busy: nothing sent, nothing changed.
      try {
        await this.engine.runner.bounce(id, `returned by an operator (${actor.by})`)
      } catch (err) {
        if (err instanceof SpoolBusyError) throw new MessageBusyError(id)
        throw err
      }
    },
  }

  /**
   * A backend id is one configured now, or one the journal has entries for in the window (a backend removed from
   * the config after the incident can still be replayed); anything else is a typo, answered with the known ids.
   */
  private async journalEntries(backend: string, since: number, until: number): Promise<FoundEntry[]> {
    const j = this.engine.journal
    if (!j.enabled) throw new JournalOffError()
    const found = await j.list({ backend, since, until })
    if (found.length === 0 && !this.engine.health.has(backend)) {
      throw new UnknownIdError('backend', backend, this.engine.health.ids())
    }
    return found
  }

  readonly journal = {
    list: async (backend: string, since: number, until: number): Promise<JournalListView> => {
      const found = await this.journalEntries(backend, since, until)
      return {
        node: this.nodeName,
        backend,
        since,
        until,
        entries: found.map((e) => ({
          id: e.id,
          at: e.line.at,
          from: e.line.from,
          rcpts: e.rcpts,
          messageId: e.line.messageId,
          size: e.line.size,
          replayed: e.replayed,
        })),
      }
    },
    replay: async (req: ReplayRequestView, _actor: Actor): Promise<ReplayView> => {
      await this.journalEntries(req.backend, req.since, req.until)
      const r = await this.engine.journal.replay(req, this.engine.spool)
      // The replayed messages are due now: deliver them without waiting for the next round.
      if (!req.dryRun && r.messages > 0) this.engine.runner.drain()
      return { node: this.nodeName, ...r, again: req.again }
    },
  }
}
