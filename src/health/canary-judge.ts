// The detector's canary signal: is a backend losing canaries (accepted with 250, never back) more than the rest of
// the pool? Pure and synchronous: fed returns and losses, it answers whether one loss is an alarm. README "Canaries"
// explains both rules:
//
//   loss, while a peer's canary of the same round came back (else it may be the return path's) ──┐
//     ├─▶ never returned one since (re)admission ──────────────────────────────────────────────▶ alarm
//     └─▶ CUSUM over its canaries (p0 = rest of the pool's loss rate, floored) ≥ h ──────────▶ alarm
//   pool: most backends losing half their recent canaries = the return path is broken ──────────▶ nobody
//
// A canary loss is strong evidence: unlike a 4xx, a healthy backend never loses one, so a few stand out.

/** Outcomes of each backend's last canaries kept for the pool comparison. */
const WINDOW = 200

export interface CanaryJudgeSettings {
  /** p0 is at least this (a pool that never loses would make any loss infinitely surprising). */
  floor: number
  /** p1 = max(ratio × p0, p0 + margin): the loss rate the test is tuned to catch. */
  ratio: number
  margin: number
  /** h of the CUSUM: with the defaults three losses close together reach it, two do not. */
  threshold: number
  /** How far before a lost canary a peer's returned canary still counts as "the same round". */
  roundMs: number
}

export const CANARY_JUDGE_DEFAULTS: Omit<CanaryJudgeSettings, 'roundMs'> = {
  floor: 0.01,
  ratio: 5,
  margin: 0.05,
  threshold: 5,
}

export interface CanaryEvidence {
  signal: 'canary'
  /** Losses and canaries behind the statistic (or since admission, for the "never returned" rule). */
  faults: number
  messages: number
  /** The backend's own loss rate over its last canaries, and the rest of the pool's (null: no peers with data). */
  rate: number
  poolRate: number | null
  statistic: number
  threshold: number
  firstFaultAt: number | null
  rule: 'none-returned' | 'cusum'
}

interface State {
  /** Recent outcomes, true = lost. */
  window: boolean[]
  statistic: number
  faults: number
  messages: number
  firstFaultAt: number | null
  returnedSinceReset: number
  lostSinceReset: number
  /** acceptedAt of the newest canary that came back. */
  lastReturnAcceptedAt: number
}

export interface PeerView {
  id: string
  /** Gets mail now (admitted or in probation): only these are judged and compared. */
  inRotation: boolean
}

export class CanaryJudge {
  private readonly states = new Map<string, State>()

  constructor(readonly settings: CanaryJudgeSettings) {}

  private state(id: string): State {
    let s = this.states.get(id)
    if (!s) {
      s = {
        window: [],
        statistic: 0,
        faults: 0,
        messages: 0,
        firstFaultAt: null,
        returnedSinceReset: 0,
        lostSinceReset: 0,
        lastReturnAcceptedAt: 0,
      }
      this.states.set(id, s)
    }
    return s
  }

  /** The backend was ejected: it comes back with a clean slate (its window stays, for its peers' reference). */
  reset(id: string): void {
    const s = this.state(id)
    s.statistic = 0
    s.faults = 0
    s.messages = 0
    s.firstFaultAt = null
    s.returnedSinceReset = 0
    s.lostSinceReset = 0
  }

  statistic(id: string): number {
    return this.states.get(id)?.statistic ?? 0
  }

  /** Own loss rate over the window, null before any canary settled. */
  lossRate(id: string): number | null {
    const w = this.states.get(id)?.window ?? []
    return w.length > 0 ? w.filter((x) => x).length / w.length : null
  }

  private push(s: State, lost: boolean): void {
    s.window.push(lost)
    if (s.window.length > WINDOW) s.window.shift()
  }

  /** The rest of the pool's losses and canaries over their windows (only backends in rotation). */
  private rest(id: string, peers: PeerView[]): { lost: number; total: number } {
    let lost = 0
    let total = 0
    for (const p of peers) {
      if (p.id === id || !p.inRotation) continue
      const w = this.states.get(p.id)?.window ?? []
      total += w.length
      lost += w.filter((x) => x).length
    }
    return { lost, total }
  }

  private params(id: string, peers: PeerView[]) {
    const rest = this.rest(id, peers)
    const f = this.settings
    // Smoothed so a peer or two without history do not make p0 zero (the floor catches the rest).
    const p0 = Math.min(0.5, Math.max(f.floor, (rest.lost + 0.5) / (rest.total + 1)))
    const p1 = Math.min(0.99, Math.max(f.ratio * p0, p0 + f.margin))
    return { rest, p0, p1 }
  }

  returned(id: string, acceptedAt: number, peers: PeerView[]): void {
    const s = this.state(id)
    const { p0, p1 } = this.params(id, peers)
    this.push(s, false)
    s.returnedSinceReset++
    s.lastReturnAcceptedAt = Math.max(s.lastReturnAcceptedAt, acceptedAt)
    s.messages++
    s.statistic = Math.max(0, s.statistic + Math.log((1 - p1) / (1 - p0)))
    if (s.statistic === 0) {
      s.faults = 0
      s.messages = 0
      s.firstFaultAt = null
    }
  }

  /** A canary of `id` accepted at `acceptedAt` is lost; returns the evidence when that is an alarm. */
  lost(id: string, acceptedAt: number, now: number, peers: PeerView[]): CanaryEvidence | null {
    const s = this.state(id)
    const { rest, p0, p1 } = this.params(id, peers)
    this.push(s, true)
    s.lostSinceReset++
    s.faults++
    s.messages++
    s.firstFaultAt ??= now
    s.statistic += Math.log(p1 / p0)
    const poolRate = rest.total > 0 ? rest.lost / rest.total : null
    const rate = this.lossRate(id) ?? 1
    if (this.degraded(peers)) return null
    // Never back since admission while a peer's canary of the same round came back: it swallows them.
    const peerBack = peers.some(
      (p) =>
        p.id !== id &&
        p.inRotation &&
        (this.states.get(p.id)?.lastReturnAcceptedAt ?? 0) >= acceptedAt - this.settings.roundMs,
    )
    if (s.returnedSinceReset === 0 && peerBack) {
      return {
        signal: 'canary',
        faults: s.lostSinceReset,
        messages: s.lostSinceReset,
        rate,
        poolRate,
        statistic: s.statistic,
        threshold: this.settings.threshold,
        firstFaultAt: s.firstFaultAt,
        rule: 'none-returned',
      }
    }
    // Only a loss while the peers' canaries of the same round came back stands out: without that it may be the
    // return path's (or there is no peer to compare with).
    if (!peerBack || s.statistic < this.settings.threshold) return null
    return {
      signal: 'canary',
      faults: s.faults,
      messages: s.messages,
      rate,
      poolRate,
      statistic: s.statistic,
      threshold: this.settings.threshold,
      firstFaultAt: s.firstFaultAt,
      rule: 'cusum',
    }
  }

  /** Most judged backends losing half their canaries or more: the return path is broken, nobody is singled out. */
  degraded(peers: PeerView[]): boolean {
    let judged = 0
    let bad = 0
    for (const p of peers) {
      const w = this.states.get(p.id)?.window ?? []
      if (!p.inRotation || w.length < 4) continue
      judged++
      if (w.filter((x) => x).length * 2 >= w.length) bad++
    }
    return judged >= 2 && bad * 2 > judged
  }
}
