// Per-backend health: the state machine around each breaker, probes before re-admission, slow start after it.
//
//   admitted ──breaker opens──▶ ejected ──timer──▶ probing ──probe ok──▶ trial ──1 message ok──▶ probation ──▶ admitted
//                                  ▲                  │ probe fails          │ trial fails
//                                  └──────────────────┴──────────────────────┘ (ejection time doubles)
//
// The outlier detector (detector.ts, run by detector-loop.ts) ejects through the same breaker with its evidence
// (ejectByDetector). Probation holds `probation_share` of the weight until `probation_messages` good messages, then
// ramps to full weight over `slow_start` and ends.
//
// Manual state (operator's eject/drain, shared through the state store) wins over all of this: while it holds the
// backend gets no new messages whatever its breaker says; when it is lifted the backend ramps up again.
// Automatic ejections are shared too: a node that ejects a backend tells the others, which take it out as well and
// then recover it on their own probes. A restore clears the shared ejection; every node, the one whose own breaker
// ejected the backend included, re-admits it when it sees the ejection cleared before its end.
import { EventEmitter } from 'node:events'
import type { DeliveryAttempt, StageFailure } from '../backend/outcome'
import type { AutoEjection, ManualOverride, StateStore } from '../cluster/types'
import type { BackendConfig } from '../config/schema'
import type { Logger } from '../log'
import { BackendBreaker, type BreakerSettings, type WindowStats } from './breaker'
import { RecentCounter } from './recent'

// detector: begin
/** Who took a backend out: the counters of `mxgate_backend_ejections_total{reason}`. */
export type EjectionCause = 'breaker' | 'detector' | 'probation' | 'canary' | 'operator'

/** What an ejection by the detector carries, for the log, the API and `mxgate status`. */
export interface EjectionEvidence {
  /** canary: canaries accepted with 250 that never came back (src/health/canary-judge.ts). */
  signal: 'fault' | 'refusal' | 'canary'
  faults: number
  messages: number
  rate: number
  poolRate: number | null
  statistic: number
  threshold: number
  /** Epoch ms of the first fault behind the statistic. */
  firstFaultAt: number | null
}

/** Ejections by the detector are shared with this prefix so every node can count them against the budget. */
export function causeOfShared(reason: string): EjectionCause {
  if (reason.startsWith('detector:')) return 'detector'
  if (reason.startsWith('probation:')) return 'probation'
  if (reason.startsWith('canary:')) return 'canary'
  return 'breaker'
}
// detector: end

export type HealthState = 'admitted' | 'probation' | 'ejected' | 'probing' | 'trial'

export interface BackendStatus {
  id: string
  state: HealthState
  /** Why it is in this state (ejection evidence, probe failure), or null when admitted. */
  reason: string | null
  since: number
  /** End of the current ejection, when ejected. */
  until: number | null
  /** Consecutive ejections (resets after `repeat_reset` of good behaviour). */
  ejections: number
  window: WindowStats
  lastFault: string | null
  /** The operator's override in force, which wins over `state` for admission. */
  manual: ManualOverride | null
  /** Attempts on this node over the last 5 minutes. */
  recent: { ok: number; fail: number; spanMs: number }
  /** Who took it out (while ejected, probing or on trial), and the detector's evidence when it was the detector. */
  ejectedBy: EjectionCause | null
  evidence: EjectionEvidence | null
}

export interface Admission {
  allowed: boolean
  /** Multiplies the configured weight: probation_share until its good messages are in, then a ramp to 1. */
  weightFactor: number
}

export interface HealthDeps {
  /** Fresh-connection health check (EHLO/NOOP/QUIT); null when healthy. */
  probe: (backendId: string, deadlineAt: number) => Promise<StageFailure | null>
  /** Where manual overrides and automatic ejections are shared with other nodes (memory store: this process). */
  store: StateStore
  log: Logger
  now?: () => number
  probeTimeoutMs?: number
  /** The detector's view: is this backend's statistic at its warning level? */
  suspicion?: (id: string, probation: boolean) => boolean
  /** Canaries a backend in probation must return before it is fully admitted (canary.probation_returns; 0 = none). */
  probationReturns?: number
}

interface Entry {
  id: string
  breaker: BackendBreaker
  state: HealthState
  reason: string | null
  since: number
  until: number | null
  ejections: number
  lastAdmittedAt: number
  /**
   * When this node last closed the backend's breaker (trial passed, restore, or the ejecting node let go); 0 never.
   * Another node's ejection decided before it is not followed (see reconcile).
   */
  readmittedAt: number
  /** When the backend last came back into rotation here (any way, a reload's addition too); 0 never out. */
  returnedAt: number
  lastFault: string | null
  trialInFlight: boolean
  timer: NodeJS.Timeout | null
  /** The manual override last applied (to notice when it is lifted or lapses). */
  manual: ManualOverride | null
  /** Set while opening the breaker because another node ejected the backend. */
  remote: { node: string; reason: string } | null
  /** The shared ejection as of the last reconcile: when it vanishes before its `until`, someone restored it. */
  shared: AutoEjection | null
  recent: RecentCounter
  // detector: begin
  ejectedBy: EjectionCause | null
  evidence: EjectionEvidence | null
  /** Set just before the detector opens the breaker: onOpen uses it instead of the breaker's window. */
  detectorEjection: { cause: EjectionCause; reason: string; evidence: EjectionEvidence } | null
  /** Good messages since probation began. */
  probationGood: number
  /** Canaries returned since probation began. */
  probationCanaries: number
  /** When the ramp from probation_share began (after probation_messages good messages); null before. */
  rampFrom: number | null
  // detector: end
}

export class HealthRegistry extends EventEmitter {
  private readonly entries = new Map<string, Entry>()
  private readonly now: () => number
  private closed = false
  private readonly tick: NodeJS.Timeout
  private readonly onStoreChange = (ev: { id: string }) => this.reconcile(ev.id)
  private readonly onResync = () => this.reconcileAll()

  constructor(
    backends: BackendConfig[],
    private readonly settings: BreakerSettings,
    private readonly deps: HealthDeps,
  ) {
    super()
    this.now = deps.now ?? Date.now
    for (const b of backends) this.add(b.id)
    deps.store.on('change', this.onStoreChange)
    deps.store.on('resync', this.onResync)
    // Manual overrides can lapse by themselves (`until`); a cheap periodic look notices it.
    this.tick = setInterval(() => this.reconcileAll(), 1000)
    this.tick.unref()
    this.reconcileAll()
  }

  private add(id: string): void {
    const now = this.now()
    const entry: Entry = {
      id,
      breaker: undefined as unknown as BackendBreaker, // set just below: the breaker's callback needs `entry`

      state: 'admitted',
      reason: null,
      since: now,
      until: null,
      ejections: 0,
      lastAdmittedAt: now,
      readmittedAt: 0,
      returnedAt: 0,
      lastFault: null,
      trialInFlight: false,
      timer: null,
      manual: null,
      remote: null,
      shared: null,
      recent: new RecentCounter(),
      ejectedBy: null,
      evidence: null,
      detectorEjection: null,
      probationGood: 0,
      probationCanaries: 0,
      rampFrom: null,
    }
    entry.breaker = new BackendBreaker(id, this.settings, () => this.nextEjectionMs(entry))
    const cb = entry.breaker.cb
    cb.on('open', () => this.onOpen(entry))
    cb.on('halfOpen', () => this.onHalfOpen(entry))
    cb.on('close', () => this.onClose(entry))
    this.entries.set(id, entry)
  }

  /** Doubles with each ejection that follows soon after the last one; capped. */
  private nextEjectionMs(e: Entry): number {
    const fresh = e.state === 'admitted' && this.now() - e.lastAdmittedAt > this.settings.repeatResetMs
    const repeats = fresh ? 0 : e.ejections
    return Math.min(this.settings.maxEjectionMs, this.settings.ejectionMs * 2 ** Math.min(repeats, 30))
  }

  private transition(e: Entry, to: HealthState, reason: string | null, until: number | null = null): void {
    const from = e.state
    e.state = to
    e.reason = reason
    e.since = this.now()
    e.until = until
    const w = e.breaker.window()
    const fields = { backend: e.id, from, to, reason, ejections: e.ejections, window: w, until, evidence: e.evidence }
    if (to === 'ejected') this.deps.log.warn(fields, `backend ${e.id} ejected: ${reason}`)
    else this.deps.log.info(fields, `backend ${e.id} ${from} → ${to}`)
    this.emit('state', this.status(e.id))
  }

  private onOpen(e: Entry): void {
    if (this.closed) return
    const fresh = this.now() - e.lastAdmittedAt > this.settings.repeatResetMs && e.state === 'admitted'
    e.ejections = fresh ? 1 : e.ejections + 1
    const w = e.breaker.window()
    const pct = w.attempts > 0 ? Math.round((100 * w.faults) / w.attempts) : 0
    const until = this.now() + e.breaker.resetTimeoutMs
    if (e.remote) {
      e.ejectedBy = causeOfShared(e.remote.reason)
      e.evidence = null
      this.transition(e, 'ejected', `ejected by ${e.remote.node}: ${e.remote.reason}`, until)
      this.emit('ejection', { id: e.id, cause: e.ejectedBy, evidence: null, local: false })
      return
    }
    // detector: begin
    const byDetector = e.detectorEjection
    e.detectorEjection = null
    // A failed probe or trial continues the same episode: it stays the detector's (and counts against its budget).
    const again = (e.state === 'probing' || e.state === 'trial') && e.ejectedBy !== null
    if (!again || byDetector) {
      e.ejectedBy = byDetector?.cause ?? 'breaker'
      e.evidence = byDetector?.evidence ?? null
    }
    if (byDetector) {
      this.transition(e, 'ejected', byDetector.reason, until)
      this.emit('ejection', { id: e.id, cause: byDetector.cause, evidence: byDetector.evidence, local: true })
      this.publish(
        this.deps.store.setEjection(e.id, {
          reason: byDetector.reason,
          at: this.now(),
          until,
          count: e.ejections,
          node: this.deps.store.node,
        }),
      )
      return
    }
    // detector: end
    const evidence =
      e.state === 'probing'
        ? (e.reason ?? 'probe failed')
        : e.state === 'trial'
          ? `trial message failed: ${e.lastFault ?? 'unknown'}`
          : `${w.faults} of ${w.attempts} attempts failed (${pct}%) within ${this.settings.windowMs / 1000}s; last: ${e.lastFault ?? 'unknown'}`
    this.transition(e, 'ejected', evidence, until)
    this.emit('ejection', { id: e.id, cause: e.ejectedBy, evidence: null, local: true })
    const store = this.deps.store
    this.publish(
      store.setEjection(e.id, { reason: evidence, at: this.now(), until, count: e.ejections, node: store.node }),
    )
  }

  private publish(p: Promise<void>): void {
    p.catch((err: unknown) => this.deps.log.warn({ err }, 'could not share backend state'))
  }

  private onHalfOpen(e: Entry): void {
    if (this.closed) return
    this.transition(e, 'probing', `ejection time over; probing (ejected ${e.ejections}x)`)
    const timeout = this.deps.probeTimeoutMs ?? this.settings.probeTimeoutMs
    this.deps
      .probe(e.id, this.now() + timeout)
      .then((failure) => {
        if (this.closed || e.state !== 'probing') return
        if (failure) {
          e.reason = `probe failed: ${failure.message}` // the message starts with its stage
          e.lastFault = e.reason
          e.breaker.open(this.nextEjectionMs(e))
        } else {
          this.transition(e, 'trial', 'probe passed; waiting for one trial message')
        }
      })
      .catch((err: unknown) => {
        this.deps.log.error({ backend: e.id, err }, 'probe crashed')
        if (!this.closed) e.breaker.open(this.nextEjectionMs(e))
      })
  }

  private onClose(e: Entry): void {
    if (this.closed) return
    e.lastAdmittedAt = this.now()
    e.readmittedAt = this.now()
    e.remote = null
    const shared = this.deps.store.ejections().get(e.id)
    if (shared && shared.node === this.deps.store.node) this.publish(this.deps.store.setEjection(e.id, null))
    this.startProbation(e)
  }

  /**
   * Re-admission: the backend carries a flat `probation_share` of its weight until it has delivered
   * `probation_messages` good messages (a bad one is caught by the stricter probation detector while its share is
   * small), then ramps up to 100% over `slow_start`. Without either, it is admitted at once.
   */
  private startProbation(e: Entry): void {
    e.returnedAt = this.now()
    e.ejectedBy = null
    e.evidence = null
    e.probationGood = 0
    e.probationCanaries = 0
    e.rampFrom = null
    const returns = this.deps.probationReturns ?? 0
    if (this.settings.slowStartMs <= 0 && this.settings.probationMessages <= 0 && returns <= 0) {
      this.transition(e, 'admitted', null)
      return
    }
    if (e.timer) clearTimeout(e.timer)
    e.timer = null
    const { slowStartMs, probationMessages } = this.settings
    this.transition(
      e,
      'probation',
      `re-admitted; ${probationMessages} good messages at ${Math.round(this.settings.probationShare * 100)}% of its weight, then ramping up over ${slowStartMs / 1000}s${returns > 0 ? `; ${returns} canaries must come back` : ''}`,
    )
    if (probationMessages <= 0) this.startRamp(e)
  }

  private startRamp(e: Entry): void {
    e.rampFrom = this.now()
    e.timer = setTimeout(() => {
      e.timer = null
      this.endProbation(e)
    }, this.settings.slowStartMs)
    e.timer.unref()
  }

  /** Probation ends when its time, its good messages and its returned canaries are all done. */
  private endProbation(e: Entry): void {
    if (e.state !== 'probation' || e.rampFrom === null || e.timer !== null) return
    if (e.probationGood < this.settings.probationMessages) return
    if (e.probationCanaries < (this.deps.probationReturns ?? 0)) return
    e.lastAdmittedAt = this.now()
    this.transition(e, 'admitted', null)
  }

  /**
   * A backend a reload added: it starts in probation (a small share until its good messages are in, then a ramp),
   * as a re-admitted one does, so a misconfigured newcomer meets the stricter probation detector with little mail.
   */
  addBackend(id: string): void {
    if (this.entries.has(id) || this.closed) return
    this.add(id)
    const e = this.entry(id)
    this.deps.log.info({ backend: id }, `backend ${id} added by a reload`)
    this.startProbation(e)
    this.reconcile(id)
  }

  /** A backend a reload removed, once nothing is in flight to it: its timers and breaker go. */
  removeBackend(id: string): void {
    const e = this.entries.get(id)
    if (!e) return
    if (e.timer) clearTimeout(e.timer)
    e.breaker.shutdown()
    this.entries.delete(id)
    this.deps.log.info({ backend: id }, `backend ${id} removed by a reload`)
  }

  /** A reload changed breaker settings: thresholds apply to every backend at once (the window needs a restart). */
  retune(): void {
    for (const e of this.entries.values()) e.breaker.retune(this.settings)
  }

  has(id: string): boolean {
    return this.entries.has(id)
  }

  ids(): string[] {
    return [...this.entries.keys()]
  }

  /** May the pool send this backend a message now, and with what share? */
  admission(id: string): Admission {
    const e = this.entries.get(id)
    if (!e) return { allowed: false, weightFactor: 0 }
    if (this.deps.store.overrides().has(id)) return { allowed: false, weightFactor: 0 }
    switch (e.state) {
      case 'admitted':
        return { allowed: true, weightFactor: 1 }
      case 'probation': {
        const start = this.settings.probationShare
        if (e.rampFrom === null) return { allowed: true, weightFactor: start }
        const ramp =
          this.settings.slowStartMs > 0 ? Math.min(1, (this.now() - e.rampFrom) / this.settings.slowStartMs) : 1
        return { allowed: true, weightFactor: start + (1 - start) * ramp }
      }
      case 'trial':
        return { allowed: !e.trialInFlight, weightFactor: this.settings.probationShare }
      default:
        return { allowed: false, weightFactor: 0 }
    }
  }

  /**
   * Runs one delivery to `id` through its breaker. `faultOf` returns the reason when the attempt was the
   * backend's fault. Resolves null when the breaker would not let it run (the caller picks another backend).
   */
  async track(
    id: string,
    fn: () => Promise<DeliveryAttempt>,
    faultOf: (a: DeliveryAttempt) => string | null,
    /** settleLater: the caller counts the attempt in the shared counters itself, with settle(). */
    opts: { settleLater?: boolean } = {},
  ): Promise<DeliveryAttempt | null> {
    const e = this.entries.get(id)
    if (!e) throw new Error(`unknown backend ${id}`)
    const isTrial = e.state === 'trial'
    if (isTrial) e.trialInFlight = true
    try {
      return await e.breaker.run(fn, (a) => {
        const reason = faultOf(a)
        if (reason !== null) e.lastFault = reason
        e.recent.add(reason === null)
        if (!opts.settleLater) this.settle(id, reason !== null, false)
        return reason
      })
    } finally {
      if (isTrial) e.trialInFlight = false
    }
  }

  // detector: begin
  /**
   * Counts one attempt in the shared outcome counters, which the detector reads pooled over every node: `fail`
   * when the backend caused (part of) its failure, `refused` when it refused something for good as the message's.
   */
  settle(id: string, fail: boolean, refused: boolean): void {
    const e = this.entries.get(id)
    if (!e) return
    this.deps.store.recordOutcomes(id, fail ? 0 : 1, fail ? 1 : 0, this.now(), refused ? 1 : 0)
    if (e.state === 'probation' && !fail) {
      e.probationGood++
      if (e.rampFrom === null && e.probationGood >= this.settings.probationMessages) this.startRamp(e)
      else this.endProbation(e)
    }
  }

  /** A canary through this backend came back: in probation, one of the returns it owes. */
  canaryReturned(id: string): void {
    const e = this.entries.get(id)
    if (e?.state !== 'probation') return
    e.probationCanaries++
    this.endProbation(e)
  }

  /** In probation or on trial, or at the detector's warning level: its 5xx are confirmed elsewhere. */
  suspect(id: string): boolean {
    const e = this.entries.get(id)
    if (!e) return false
    const probation = e.state === 'probation' || e.state === 'trial'
    return probation || (this.deps.suspicion?.(id, probation) ?? false)
  }

  /**
   * When the backend last came back into rotation on this node (0: never out). Evidence from before it belongs to
   * the episode that ended then: the detector does not hold it against the re-admitted backend.
   */
  returnedAt(id: string): number {
    return this.entries.get(id)?.returnedAt ?? 0
  }

  /** Backends the detector has out now (ejected, probing or on trial after its ejection), on any node. */
  outByDetector(): string[] {
    return [...this.entries.values()]
      .filter((e) => e.ejectedBy === 'detector' || e.ejectedBy === 'probation' || e.ejectedBy === 'canary')
      .filter((e) => e.state === 'ejected' || e.state === 'probing' || e.state === 'trial')
      .map((e) => e.id)
  }

  /** Takes a backend out on the detector's evidence (its breaker opens; ejection time grows as for the breaker). */
  ejectByDetector(
    id: string,
    cause: 'detector' | 'probation' | 'canary',
    reason: string,
    evidence: EjectionEvidence,
  ): boolean {
    const e = this.entries.get(id)
    if (!e || this.closed || (e.state !== 'admitted' && e.state !== 'probation')) return false
    if (e.breaker.state !== 'closed') return false
    e.detectorEjection = { cause, reason: `${cause}: ${reason}`, evidence }
    e.breaker.open(this.nextEjectionMs(e))
    return true
  }
  // detector: end

  /** Charges a fault found after the fact (a second opinion showed the backend wrong). */
  chargeFault(id: string, reason: string): void {
    const e = this.entries.get(id)
    if (!e) return
    e.lastFault = reason
    const failed = async (): Promise<DeliveryAttempt> => ({
      backendId: id,
      ok: false,
      accepted: [],
      refused: [],
      dotReply: null,
      failure: null,
      elapsedMs: 0,
      reusedSession: false,
    })
    e.breaker.run(failed, () => reason).catch((err: unknown) => this.deps.log.error({ err }, 'chargeFault'))
  }

  private entry(id: string): Entry {
    const e = this.entries.get(id)
    if (!e) throw new Error(`unknown backend ${id}`)
    return e
  }

  /** An operator's ejection, shared with every node; `forMs` null lasts until restored. */
  async eject(id: string, reason: string, forMs: number | null, by: string): Promise<void> {
    this.entry(id)
    const now = this.now()
    await this.deps.store.setOverride(id, {
      state: 'ejected',
      by,
      reason,
      at: now,
      until: forMs === null ? null : now + forMs,
    })
    this.reconcile(id)
  }

  /** No new messages to the backend; those in flight finish. */
  async drain(id: string, reason: string, by: string): Promise<void> {
    this.entry(id)
    await this.deps.store.setOverride(id, { state: 'draining', by, reason, at: this.now(), until: null })
    this.reconcile(id)
  }

  /** Clears manual and automatic ejection everywhere; the backend ramps up again. */
  async restore(id: string, by: string): Promise<void> {
    const e = this.entry(id)
    const store = this.deps.store
    e.shared = null // our own clearing below is not news from elsewhere
    await Promise.all([store.setOverride(id, null), store.setEjection(id, null)])
    this.deps.log.info({ backend: id, by }, `backend ${id} restored by ${by}`)
    e.remote = null
    if (e.breaker.state !== 'closed')
      e.breaker.close() // → onClose → probation
    else this.reconcile(id)
  }

  private reconcileAll(): void {
    if (this.closed) return
    for (const id of this.entries.keys()) this.reconcile(id)
  }

  /** Brings local state in line with the shared store: manual overrides, other nodes' ejections. */
  private reconcile(id: string): void {
    const e = this.entries.get(id)
    if (!e || this.closed) return
    const store = this.deps.store
    const manual = store.overrides().get(id) ?? null
    if (manual && (e.manual === null || e.manual.at !== manual.at || e.manual.state !== manual.state)) {
      e.manual = manual
      const label = manual.state === 'ejected' ? 'manual-ejected' : 'draining'
      if (manual.state === 'ejected') this.emit('ejection', { id, cause: 'operator', evidence: null, local: true })
      this.deps.log.warn(
        { backend: id, to: label, by: manual.by, reason: manual.reason, until: manual.until },
        `backend ${id} ${label} by ${manual.by}: ${manual.reason}`,
      )
      this.emit('state', this.status(id))
    } else if (!manual && e.manual) {
      const was = e.manual
      e.manual = null
      this.deps.log.info({ backend: id, was: was.state }, `backend ${id} manual ${was.state} lifted`)
      if (e.breaker.state !== 'closed') e.breaker.close()
      else this.startProbation(e)
    }
    const shared = store.ejections().get(id) ?? null
    const seen = e.shared
    e.shared = shared
    const now = this.now()
    // Follow another node's ejection unless it was decided before this node last re-admitted the backend: that
    // re-admission rests on a probe and a trial message newer than the other node's evidence (two nodes that ejected
    // the same episode each judge its end; following the other's older `until` would eject again what was just
    // re-admitted, for whatever was left of it).
    if (
      shared &&
      shared.node !== store.node &&
      shared.until > now &&
      shared.at > e.readmittedAt &&
      e.breaker.state === 'closed'
    ) {
      e.remote = { node: shared.node, reason: shared.reason }
      e.breaker.open(shared.until - now)
    } else if (!shared && e.breaker.state !== 'closed') {
      if (seen && seen.until > now) {
        // Cleared before its end: only a restore does that (an ejecting node clears its own entry after its probe
        // and trial, i.e. after `until`). This node's own breaker may be the one that ejected it: follow anyway.
        this.deps.log.info({ backend: id, ejectedBy: seen.node }, `backend ${id} restored on another node`)
        e.remote = null
        e.breaker.close()
      } else if (e.remote) {
        // The node that ejected it has re-admitted it: follow, carefully.
        e.remote = null
        e.breaker.close()
      }
    }
  }

  status(id: string): BackendStatus {
    const e = this.entries.get(id)
    if (!e) throw new Error(`unknown backend ${id}`)
    return {
      id,
      state: e.state,
      reason: e.reason,
      since: e.since,
      until: e.until,
      ejections: e.ejections,
      window: e.breaker.window(),
      lastFault: e.lastFault,
      manual: this.deps.store.overrides().get(id) ?? null,
      recent: e.recent.totals(this.now()),
      ejectedBy: e.state === 'ejected' || e.state === 'probing' || e.state === 'trial' ? e.ejectedBy : null,
      evidence: e.state === 'ejected' || e.state === 'probing' || e.state === 'trial' ? e.evidence : null,
    }
  }

  statuses(): BackendStatus[] {
    return this.ids().map((id) => this.status(id))
  }

  close(): void {
    this.closed = true
    clearInterval(this.tick)
    this.deps.store.off('change', this.onStoreChange)
    this.deps.store.off('resync', this.onResync)
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer)
      e.breaker.shutdown()
    }
  }
}
