// The sequential test behind the outlier detector: a one-sided Bernoulli CUSUM on the log-likelihood ratio of
// "this backend fails at p1" against "it fails at p0, like the rest of the pool". Pure arithmetic; it knows nothing
// of backends, time or the store (detector.ts feeds it). README "How the detector decides" explains the numbers.
//
//   per message:  fault → ln(p1/p0)    ok → ln((1-p1)/(1-p0))
//   S ← max(0, S + Σ llr)              alarm when S ≥ h (and the faults behind S reach a minimum)
//
// Fed a batch at a time (one time bucket's counts), S can only be lower than when fed message by message (the
// maximum over fewer starting points), so batching never adds false alarms; it may delay an alarm by one batch.

export interface TestParams {
  /** Floor for p0: a pool without faults must not make a single fault look like a landslide. */
  floor: number
  /** p1 = max(ratio·p0, p0 + margin), capped below 1. */
  ratio: number
  margin: number
}

/** The rate the test looks for, given the rate it compares with. */
export function alternativeRate(p0: number, params: TestParams): number {
  return Math.min(0.999, Math.max(params.ratio * p0, p0 + params.margin))
}

/** p0 from the rest of the pool's counts: smoothed (+1/+2) so a thin sample errs high, never below the floor. */
export function referenceRate(fails: number, messages: number, floor: number): number {
  return Math.max(floor, (fails + 1) / (messages + 2))
}

/** The evidence one fault and one good message add, for p0 and p1. */
export function llrWeights(p0: number, p1: number): { fault: number; ok: number } {
  return { fault: Math.log(p1 / p0), ok: Math.log((1 - p1) / (1 - p0)) }
}

/** Expected evidence per message when the true rate is q (positive: S drifts up). */
export function drift(q: number, p0: number, p1: number): number {
  const w = llrWeights(p0, p1)
  return q * w.fault + (1 - q) * w.ok
}

/**
 * Expected messages between false alarms for a backend that fails exactly at p0 (Wald's approximation without
 * overshoot, e^h / |drift|). Simulation (test/health-cusum.test.ts) shows the true value is higher (the jumps
 * overshoot h), so this is the conservative number to choose h with.
 */
export function falseAlarmRunLength(h: number, p0: number, p1: number): number {
  return Math.exp(h) / -drift(p0, p0, p1)
}

/** The smallest h whose false-alarm run length is at least `messages` (for p0, p1). */
export function thresholdFor(messages: number, p0: number, p1: number): number {
  return Math.log(messages * -drift(p0, p0, p1))
}

/** One backend's CUSUM for one signal, with the counts behind the current excursion (the evidence). */
export class Cusum {
  statistic = 0
  /** Faults and messages since the statistic last stood at zero. */
  faults = 0
  messages = 0
  /** When the first fault of the current excursion was seen (epoch ms), or null. */
  firstFaultAt: number | null = null

  /** Adds a batch of messages, `faults` of them failed, compared with rate p0. Returns the new statistic. */
  add(faults: number, messages: number, p0: number, params: TestParams, at = 0): number {
    if (messages <= 0) return this.statistic
    const p1 = alternativeRate(p0, params)
    const w = llrWeights(p0, p1)
    const next = this.statistic + faults * w.fault + (messages - faults) * w.ok
    if (next <= 0) {
      this.reset()
      return 0
    }
    if (this.statistic === 0 && faults > 0) this.firstFaultAt = at
    this.statistic = next
    this.faults += faults
    this.messages += messages
    return next
  }

  reset(): void {
    this.statistic = 0
    this.faults = 0
    this.messages = 0
    this.firstFaultAt = null
  }
}
