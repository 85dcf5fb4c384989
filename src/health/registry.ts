// Per-backend health: the state machine around each breaker, probes before re-admission, slow start after it.
//
//   admitted ──breaker opens──▶ ejected ──timer──▶ probing ──probe ok──▶ trial ──1 message ok──▶ probation ──▶ admitted
//                                  ▲                  │ probe fails          │ trial fails
//                                  └──────────────────┴──────────────────────┘ (ejection time doubles)
import { EventEmitter } from 'node:events'
import type { DeliveryAttempt, StageFailure } from '../backend/outcome'
import type { BackendConfig } from '../config/schema'
import type { Logger } from '../log'
import { BackendBreaker, type BreakerSettings, type WindowStats } from './breaker'

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
}

export interface Admission {
  allowed: boolean
  /** Multiplies the configured weight: ramps from 0.1 to 1 during probation. */
  weightFactor: number
}

export interface HealthDeps {
  /** Fresh-connection health check (EHLO/NOOP/QUIT); null when healthy. */
  probe: (backendId: string, deadlineAt: number) => Promise<StageFailure | null>
  log: Logger
  now?: () => number
  probeTimeoutMs?: number
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
  lastFault: string | null
  trialInFlight: boolean
  timer: NodeJS.Timeout | null
}

export class HealthRegistry extends EventEmitter {
  private readonly entries = new Map<string, Entry>()
  private readonly now: () => number
  private closed = false

  constructor(
    backends: BackendConfig[],
    private readonly settings: BreakerSettings,
    private readonly deps: HealthDeps,
  ) {
    super()
    this.now = deps.now ?? Date.now
    for (const b of backends) this.add(b.id)
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
      lastFault: null,
      trialInFlight: false,
      timer: null,
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
    const fields = { backend: e.id, from, to, reason, ejections: e.ejections, window: w, until }
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
    const evidence =
      e.state === 'probing'
        ? e.reason
        : e.state === 'trial'
          ? `trial message failed: ${e.lastFault ?? 'unknown'}`
          : `${w.faults} of ${w.attempts} attempts failed (${pct}%) within ${this.settings.windowMs / 1000}s; last: ${e.lastFault ?? 'unknown'}`
    this.transition(e, 'ejected', evidence, this.now() + e.breaker.resetTimeoutMs)
  }

  private onHalfOpen(e: Entry): void {
    if (this.closed) return
    this.transition(e, 'probing', `ejection time over; probing (ejected ${e.ejections}x)`)
    const timeout = this.deps.probeTimeoutMs ?? 15_000
    this.deps
      .probe(e.id, this.now() + timeout)
      .then((failure) => {
        if (this.closed || e.state !== 'probing') return
        if (failure) {
          e.reason = `probe failed at ${failure.stage}: ${failure.message}`
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
    const now = this.now()
    e.lastAdmittedAt = now
    if (this.settings.slowStartMs <= 0) {
      this.transition(e, 'admitted', null)
      return
    }
    this.transition(e, 'probation', `re-admitted; ramping up over ${this.settings.slowStartMs / 1000}s`)
    if (e.timer) clearTimeout(e.timer)
    e.timer = setTimeout(() => {
      e.timer = null
      if (e.state === 'probation') {
        e.lastAdmittedAt = this.now()
        this.transition(e, 'admitted', null)
      }
    }, this.settings.slowStartMs)
    e.timer.unref()
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
    switch (e.state) {
      case 'admitted':
        return { allowed: true, weightFactor: 1 }
      case 'probation': {
        const ramp = Math.min(1, (this.now() - e.since) / this.settings.slowStartMs)
        return { allowed: true, weightFactor: 0.1 + 0.9 * ramp }
      }
      case 'trial':
        return { allowed: !e.trialInFlight, weightFactor: 0.1 }
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
  ): Promise<DeliveryAttempt | null> {
    const e = this.entries.get(id)
    if (!e) throw new Error(`unknown backend ${id}`)
    const isTrial = e.state === 'trial'
    if (isTrial) e.trialInFlight = true
    try {
      return await e.breaker.run(fn, (a) => {
        const reason = faultOf(a)
        if (reason !== null) e.lastFault = reason
        return reason
      })
    } finally {
      if (isTrial) e.trialInFlight = false
    }
  }

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
    }
  }

  statuses(): BackendStatus[] {
    return this.ids().map((id) => this.status(id))
  }

  close(): void {
    this.closed = true
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer)
      e.breaker.shutdown()
    }
  }
}
