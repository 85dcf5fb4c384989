// The outlier detector for soft failures: each backend's fault rate against the rest of the pool's (never a fixed
// baseline), with one CUSUM per backend per signal (cusum.ts). Two signals: backend faults, and permanent
// message-looking refusals (a broken recipient lookup answers 550 5.1.1 to real users). Pure and synchronous: it is
// fed counts (pooled over every node by the store) and returns what it would do; detector-loop.ts feeds it and
// acts. It knows nothing of timers, the store, SMTP or the breaker.
//
//   each round:  increments since last round ──▶ CUSUM per backend and signal, p0 = rest of pool's rate (window)
//                 alarms (S ≥ h, faults ≥ min) ──▶ pool degraded? nobody ejected
//                                              ──▶ observe mode? "would eject" only
//                                              ──▶ budget left? eject the strongest; else freeze (and say so)
import { DEFAULTS } from '../config/schema'
import { Cusum, referenceRate, type TestParams } from './cusum'

export type DetectorMode = 'enforce' | 'observe'
export type Signal = 'fault' | 'refusal'

export interface DetectorSettings extends TestParams {
  mode: DetectorMode
  /** h: the statistic at which a backend in normal rotation is ejected. */
  threshold: number
  /** h during probation: stricter (less evidence needed). */
  probationThreshold: number
  /** A backend whose statistic reaches this share of its threshold is "under suspicion" (its 5xx are not passed on). */
  warningShare: number
  /** Faults (or refusals) behind the statistic before it may act. */
  minFaults: number
  /** Messages the rest of the pool must have carried in the window before anyone is compared with it. */
  minReference: number
  /** At most max(1, floor(backends × share)) backends out by the detector at once. */
  budgetShare: number
  /** The pool is degraded when more than half of its backends fail at least this often: nobody is ejected then. */
  degradedRate: number
  /** Track permanent refusals as a second signal. */
  refusalSignal: boolean
}

/** The configuration's defaults (src/config/schema.ts); README "How the detector decides" derives h. */
export const DETECTOR_DEFAULTS: DetectorSettings = (({ bucketMs: _b, retentionMs: _r, ...d }) => d)(DEFAULTS.detector)

export interface Counts {
  ok: number
  fail: number
  refused: number
}

export interface BackendView {
  id: string
  /** Gets mail now (admitted or in probation): only these are judged. */
  inRotation: boolean
  probation: boolean
  /** Out (ejected, probing, on trial) because the detector took it out. */
  outByDetector: boolean
}

/** One backend's standing on one signal: the evidence an ejection carries. */
export interface Evaluation {
  id: string
  signal: Signal
  statistic: number
  threshold: number
  /** Faults (or refusals) and messages behind the statistic (since it last stood at zero), pooled over nodes. */
  faults: number
  messages: number
  /** The backend's own rate over the window. */
  rate: number
  /** The rest of the pool's rate over the window (before the floor), or null with too little traffic to compare. */
  poolRate: number | null
  /** The rate the test compared with (p0: pool rate, smoothed, floored). */
  p0: number
  firstFaultAt: number | null
  alarm: boolean
  /** 'probation' when it was judged by the stricter probation threshold. */
  reason: 'detector' | 'probation'
}

export interface Round {
  evaluations: Evaluation[]
  /** Alarms to act on now (enforce mode, budget left, pool not degraded). */
  eject: Evaluation[]
  /** Alarms not acted on (observe mode, budget reached, pool degraded). */
  wouldEject: Evaluation[]
  degraded: boolean
  /** An alarm was held back because the budget was reached. */
  frozen: boolean
  budget: number
  /** The whole pool's fault rate over the window. */
  poolRate: number
}

const rate = (num: number, den: number) => (den > 0 ? num / den : 0)

export class Detector {
  private readonly tests = new Map<string, Record<Signal, Cusum>>()

  constructor(readonly settings: DetectorSettings) {}

  /** A reload removed the backend: its statistics go. */
  forget(id: string): void {
    this.tests.delete(id)
  }

  private cusums(id: string): Record<Signal, Cusum> {
    let c = this.tests.get(id)
    if (!c) {
      c = { fault: new Cusum(), refusal: new Cusum() }
      this.tests.set(id, c)
    }
    return c
  }

  /** Forget a backend's evidence (it was ejected: it comes back with a clean slate, in probation). */
  reset(id: string): void {
    const c = this.tests.get(id)
    c?.fault.reset()
    c?.refusal.reset()
  }

  /** The statistic has reached the warning share of its threshold on either signal. */
  suspect(id: string, probation = false): boolean {
    const c = this.tests.get(id)
    if (!c) return false
    const h = probation ? this.settings.probationThreshold : this.settings.threshold
    const level = h * this.settings.warningShare
    return c.fault.statistic >= level || c.refusal.statistic >= level
  }

  statistic(id: string, signal: Signal): number {
    return this.tests.get(id)?.[signal].statistic ?? 0
  }

  /**
   * One round: `increments` are the counts that arrived since the last round, `window` the counts over the
   * reference window (both pooled over nodes), `views` every configured backend.
   */
  step(
    now: number,
    increments: ReadonlyMap<string, Counts>,
    window: ReadonlyMap<string, Counts>,
    views: BackendView[],
  ): Round {
    const s = this.settings
    const total = { fail: 0, refused: 0, messages: 0 }
    for (const v of views) {
      const w = window.get(v.id)
      if (!w) continue
      total.fail += w.fail
      total.refused += w.refused
      total.messages += w.ok + w.fail
    }
    const budget = Math.max(1, Math.floor(views.length * s.budgetShare))
    const evaluations: Evaluation[] = []
    for (const v of views) {
      const c = this.cusums(v.id)
      if (!v.inRotation) continue
      const own = window.get(v.id) ?? { ok: 0, fail: 0, refused: 0 }
      const ownMessages = own.ok + own.fail
      const inc = increments.get(v.id) ?? { ok: 0, fail: 0, refused: 0 }
      const signals: Signal[] = s.refusalSignal ? ['fault', 'refusal'] : ['fault']
      for (const signal of signals) {
        const count = (x: Counts) => (signal === 'fault' ? x.fail : x.refused)
        const incFaults = count(inc)
        const ownFaults = count(own)
        const rest = this.rest(v.id, views, window, count, budget)
        const restMessages = rest.messages
        const restFaults = rest.faults
        const cusum = c[signal]
        const comparable = restMessages >= s.minReference
        const p0 = referenceRate(restFaults, restMessages, s.floor)
        if (comparable) cusum.add(incFaults, inc.ok + inc.fail, p0, s, now)
        const threshold = v.probation ? s.probationThreshold : s.threshold
        evaluations.push({
          id: v.id,
          signal,
          statistic: cusum.statistic,
          threshold,
          faults: cusum.faults,
          messages: cusum.messages,
          rate: rate(ownFaults, ownMessages),
          poolRate: comparable ? rate(restFaults, restMessages) : null,
          p0,
          firstFaultAt: cusum.firstFaultAt,
          // In probation clear evidence acts sooner: half the minimum count of faults, with the stricter h.
          alarm:
            comparable &&
            cusum.statistic >= threshold &&
            cusum.faults >= (v.probation ? Math.ceil(s.minFaults / 2) : s.minFaults),
          reason: v.probation ? 'probation' : 'detector',
        })
      }
    }
    const degraded = this.degraded(views, window)
    const out = views.filter((v) => v.outByDetector).length
    // One ejection per backend even when both signals alarm; the strongest evidence (relative to h) first.
    const alarms = new Map<string, Evaluation>()
    for (const e of evaluations) {
      if (!e.alarm) continue
      const had = alarms.get(e.id)
      if (!had || e.statistic / e.threshold > had.statistic / had.threshold) alarms.set(e.id, e)
    }
    const ranked = [...alarms.values()].sort((a, b) => b.statistic / b.threshold - a.statistic / a.threshold)
    const eject: Evaluation[] = []
    const wouldEject: Evaluation[] = []
    let frozen = false
    for (const e of ranked) {
      if (degraded || s.mode === 'observe') wouldEject.push(e)
      else if (out + eject.length < budget) eject.push(e)
      else {
        frozen = true
        wouldEject.push(e)
      }
    }
    return {
      evaluations,
      eject,
      wouldEject,
      degraded,
      frozen,
      budget,
      poolRate: rate(total.fail, total.messages),
    }
  }

  /**
   * The rest of the pool for `id`: every other backend's window counts, less the `budget` worst of them (by
   * smoothed rate) while at least two remain. Without the trim two failers would each raise the other's reference
   * and hide each other; with it a healthy backend is compared with slightly better peers (the cost, small at real
   * volumes: see README "How the detector decides").
   */
  private rest(
    id: string,
    views: BackendView[],
    window: ReadonlyMap<string, Counts>,
    count: (c: Counts) => number,
    budget: number,
  ): { faults: number; messages: number } {
    const others = views
      .filter((o) => o.id !== id)
      .map((o) => window.get(o.id) ?? { ok: 0, fail: 0, refused: 0 })
      .map((w) => ({ faults: count(w), messages: w.ok + w.fail }))
      .sort((a, b) => (b.faults + 1) / (b.messages + 2) - (a.faults + 1) / (a.messages + 2))
    const kept = others.slice(Math.min(budget, Math.max(0, others.length - 2)))
    return kept.reduce((acc, o) => ({ faults: acc.faults + o.faults, messages: acc.messages + o.messages }), {
      faults: 0,
      messages: 0,
    })
  }

  /** More than half of the backends with enough traffic fail at least `degradedRate`: no outlier, a bad pool. */
  private degraded(views: BackendView[], window: ReadonlyMap<string, Counts>): boolean {
    let judged = 0
    let bad = 0
    const enough = Math.max(20, Math.ceil(this.settings.minReference / Math.max(1, views.length)))
    for (const v of views) {
      const w = window.get(v.id)
      if (!w || w.ok + w.fail < enough) continue
      judged++
      if (rate(w.fail, w.ok + w.fail) >= this.settings.degradedRate) bad++
    }
    return judged >= 2 && bad * 2 > judged
  }
}
