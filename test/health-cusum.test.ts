// The detector's sequential test: its numbers match the issue's, and its false-alarm arithmetic holds up in
// simulation (a fixed seed, so the run is the same every time).
import t from 'tap'
import { alternativeRate, Cusum, drift, falseAlarmRunLength, referenceRate, thresholdFor } from '../src/health/cusum'
import { DETECTOR_DEFAULTS } from '../src/health/detector'
import { createRng as seededRandom } from '../src/testing/fault-rules'

const params = DETECTOR_DEFAULTS

/** Messages until the CUSUM alarms, fed one at a time at true rate q. */
function runLength(rand: () => number, q: number, p0: number, h: number, cap = 10_000_000): number {
  const c = new Cusum()
  for (let n = 1; n <= cap; n++) {
    if (c.add(rand() < q ? 1 : 0, 1, p0, params) >= h) return n
  }
  return cap
}

t.test('for 0.5% healthy and 3% failing, the evidence per message is +0.029 and -0.016', async (t) => {
  const p1 = alternativeRate(0.005, params)
  t.equal(Number(p1.toFixed(4)), 0.03, 'p1 = max(3 x 0.5%, 0.5% + 2.5 points) = 3%')
  t.equal(Number(drift(0.03, 0.005, p1).toFixed(3)), 0.029)
  t.equal(Number(drift(0.005, 0.005, p1).toFixed(3)), -0.016)
})

t.test('the default threshold keeps false alarms below one per 10^8 healthy messages', async (t) => {
  const p1 = alternativeRate(0.005, params)
  t.ok(thresholdFor(1e8, 0.005, p1) < params.threshold, `h = ${params.threshold} ≥ ${thresholdFor(1e8, 0.005, p1)}`)
  t.ok(falseAlarmRunLength(params.threshold, 0.005, p1) > 1e8)
})

t.test('simulated false-alarm run lengths are at least the approximation used to choose h', async (t) => {
  const rand = seededRandom(20261204)
  const p0 = 0.005
  const p1 = alternativeRate(p0, params)
  for (const h of [4, 5]) {
    const runs = 120
    let total = 0
    for (let i = 0; i < runs; i++) total += runLength(rand, p0, p0, h)
    const mean = total / runs
    const approx = falseAlarmRunLength(h, p0, p1)
    t.ok(mean >= approx, `h=${h}: simulated mean ${Math.round(mean)} ≥ e^h/|drift| = ${Math.round(approx)}`)
    t.ok(mean < 4 * approx, `h=${h}: and of the same order (so extrapolating it to h=15 is sound)`)
  }
})

t.test('a 3% failer among 0.5% is caught within about 300-550 of its messages', async (t) => {
  const rand = seededRandom(7)
  const lengths: number[] = []
  for (let i = 0; i < 200; i++) lengths.push(runLength(rand, 0.03, 0.005, params.threshold))
  lengths.sort((a, b) => a - b)
  const median = lengths[100]!
  const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length
  t.ok(median >= 300 && median <= 550, `median ${median}`)
  t.ok(mean <= 600, `mean ${Math.round(mean)}`)
})

t.test('feeding a batch never raises the statistic above message-by-message feeding', async (t) => {
  const rand = seededRandom(99)
  const one = new Cusum()
  const batched = new Cusum()
  for (let b = 0; b < 200; b++) {
    let faults = 0
    for (let i = 0; i < 20; i++) {
      const f = rand() < 0.02 ? 1 : 0
      faults += f
      one.add(f, 1, 0.005, params)
    }
    batched.add(faults, 20, 0.005, params)
    t.ok(batched.statistic <= one.statistic + 1e-9)
  }
})

t.test('the evidence counts follow the current excursion and reset with it', async (t) => {
  const c = new Cusum()
  c.add(2, 10, 0.005, params, 1000)
  t.equal(c.faults, 2)
  t.equal(c.messages, 10)
  t.equal(c.firstFaultAt, 1000)
  c.add(0, 10_000, 0.005, params, 2000)
  t.equal(c.statistic, 0)
  t.equal(c.faults, 0)
  t.equal(c.firstFaultAt, null)
})

t.test('the reference rate errs high on thin samples and never drops below the floor', async (t) => {
  t.equal(referenceRate(0, 0, 0.001), 0.5)
  t.equal(referenceRate(0, 100_000, 0.001), 0.001)
  t.equal(Number(referenceRate(50, 10_000, 0.001).toFixed(4)), 0.0051)
})
