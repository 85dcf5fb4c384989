// The outlier detector, fed simulated pooled counts round by round (seeded, so every run is the same).
import t from 'tap'
import { alternativeRate, falseAlarmRunLength } from '../src/health/cusum'
import {
  type BackendView,
  type Counts,
  DETECTOR_DEFAULTS,
  Detector,
  type DetectorSettings,
  type Round,
} from '../src/health/detector'
import { createRng as seededRandom } from '../src/testing/fault-rules'

interface SimBackend {
  id: string
  weight: number
  failRate: number
  refuseRate?: number
}

/**
 * Runs rounds of `perRound` messages spread by weight; the reference window is every round so far (capped at
 * `windowRounds`). Ejected backends get no more mail. Returns the rounds and when each backend was ejected.
 */
function simulate(
  backends: SimBackend[],
  opts: { rounds: number; perRound: number; seed: number; settings?: Partial<DetectorSettings>; windowRounds?: number },
) {
  const det = new Detector({ ...DETECTOR_DEFAULTS, ...opts.settings })
  const rand = seededRandom(opts.seed)
  const history: Array<Map<string, Counts>> = []
  const ejectedAt = new Map<string, number>()
  const sent = new Map<string, number>(backends.map((b) => [b.id, 0]))
  const rounds: Round[] = []
  for (let r = 0; r < opts.rounds; r++) {
    const live = backends.filter((b) => !ejectedAt.has(b.id))
    const weight = live.reduce((a, b) => a + b.weight, 0)
    const inc = new Map<string, Counts>()
    for (const b of live) inc.set(b.id, { ok: 0, fail: 0, refused: 0 })
    for (let i = 0; i < opts.perRound; i++) {
      let x = rand() * weight
      const b =
        live.find((l) => {
          x -= l.weight
          return x < 0
        }) ?? live[live.length - 1]!
      const c = inc.get(b.id)!
      sent.set(b.id, sent.get(b.id)! + 1)
      if (rand() < b.failRate) c.fail++
      else c.ok++
      if (b.refuseRate !== undefined && rand() < b.refuseRate) c.refused++
    }
    history.push(inc)
    const window = new Map<string, Counts>()
    for (const h of history.slice(-(opts.windowRounds ?? 60)))
      for (const [id, c] of h) {
        const w = window.get(id) ?? { ok: 0, fail: 0, refused: 0 }
        window.set(id, { ok: w.ok + c.ok, fail: w.fail + c.fail, refused: w.refused + c.refused })
      }
    const views: BackendView[] = backends.map((b) => ({
      id: b.id,
      inRotation: !ejectedAt.has(b.id),
      probation: false,
      outByDetector: ejectedAt.has(b.id),
    }))
    const round = det.step(r, inc, window, views)
    rounds.push(round)
    for (const e of round.eject) {
      ejectedAt.set(e.id, sent.get(e.id)!)
      det.reset(e.id)
    }
  }
  return { rounds, ejectedAt, det }
}

const four = (failer: Partial<SimBackend> = {}): SimBackend[] => [
  { id: 'mx1', weight: 100, failRate: 0.005 },
  { id: 'mx2', weight: 100, failRate: 0.005 },
  { id: 'mx3', weight: 100, failRate: 0.005, ...failer },
  { id: 'mx4', weight: 100, failRate: 0.005 },
]

t.test('a 3% failer among 0.5% failers is ejected, and no other', async (t) => {
  for (const seed of [1, 2, 3]) {
    const { ejectedAt, rounds } = simulate(four({ failRate: 0.03 }), { rounds: 300, perRound: 40, seed })
    t.same([...ejectedAt.keys()], ['mx3'], `seed ${seed}: only mx3`)
    t.ok(ejectedAt.get('mx3')! < 1500, `seed ${seed}: after ${ejectedAt.get('mx3')} of its messages`)
    const e = rounds.flatMap((r) => r.eject)[0]!
    t.equal(e.signal, 'fault')
    t.ok(e.statistic >= e.threshold && e.faults >= DETECTOR_DEFAULTS.minFaults, 'the evidence is carried')
    t.ok(e.poolRate !== null && e.poolRate < 0.01, `pool rate ${e.poolRate}`)
  }
})

t.test('all four at 0.5% for 60,000 messages: nobody is ejected', async (t) => {
  const { ejectedAt, det } = simulate(four(), { rounds: 1500, perRound: 40, seed: 11 })
  t.equal(ejectedAt.size, 0)
  t.notOk(det.suspect('mx1'))
})

t.test('a backend refusing 3% of real users for good is caught by the refusal signal', async (t) => {
  const { ejectedAt, rounds } = simulate(four({ refuseRate: 0.03 }), { rounds: 300, perRound: 40, seed: 5 })
  t.same([...ejectedAt.keys()], ['mx3'])
  t.equal(rounds.flatMap((r) => r.eject)[0]!.signal, 'refusal')
})

t.test('two backends: the failing one is judged against the other', async (t) => {
  const { ejectedAt } = simulate(
    [
      { id: 'a', weight: 100, failRate: 0.005 },
      { id: 'b', weight: 100, failRate: 0.05 },
    ],
    { rounds: 200, perRound: 30, seed: 8 },
  )
  t.same([...ejectedAt.keys()], ['b'])
})

t.test('unequal weights: a weight-10 backend failing 5% is caught on its own small share', async (t) => {
  const { ejectedAt } = simulate(
    [
      { id: 'a', weight: 100, failRate: 0.005 },
      { id: 'b', weight: 100, failRate: 0.005 },
      { id: 'c', weight: 100, failRate: 0.005 },
      { id: 'd', weight: 50, failRate: 0.005 },
      { id: 'e', weight: 10, failRate: 0.05 },
    ],
    { rounds: 1500, perRound: 40, seed: 9 },
  )
  t.same([...ejectedAt.keys()], ['e'])
  t.ok(ejectedAt.get('e')! < 1500, `after ${ejectedAt.get('e')} of its own messages`)
})

t.test('observe mode: would eject, ejects nothing', async (t) => {
  const { ejectedAt, rounds } = simulate(four({ failRate: 0.03 }), {
    rounds: 300,
    perRound: 40,
    seed: 1,
    settings: { mode: 'observe' },
  })
  t.equal(ejectedAt.size, 0)
  t.ok(rounds.some((r) => r.wouldEject.some((e) => e.id === 'mx3')))
  t.notOk(rounds.some((r) => r.wouldEject.some((e) => e.id !== 'mx3')))
})

t.test('all four failing 20%: the pool is degraded and nobody is ejected', async (t) => {
  const all = four().map((b) => ({ ...b, failRate: 0.2 }))
  const { ejectedAt, rounds } = simulate(all, { rounds: 200, perRound: 40, seed: 3 })
  t.equal(ejectedAt.size, 0)
  t.ok(rounds.at(-1)!.degraded)
})

t.test('two 3% failers with a budget of one: one is ejected, the freeze is flagged', async (t) => {
  const b = four({ failRate: 0.03 })
  b[0]!.failRate = 0.03
  const { ejectedAt, rounds } = simulate(b, { rounds: 400, perRound: 40, seed: 4 })
  t.equal(ejectedAt.size, 1)
  t.ok(['mx1', 'mx3'].includes([...ejectedAt.keys()][0]!))
  t.ok(
    rounds.some((r) => r.frozen),
    'the freeze is flagged',
  )
  t.equal(rounds.at(-1)!.budget, 1)
})

t.test('probation uses the stricter threshold', async (t) => {
  const det = new Detector(DETECTOR_DEFAULTS)
  const views: BackendView[] = [
    { id: 'a', inRotation: true, probation: false, outByDetector: false },
    { id: 'b', inRotation: true, probation: true, outByDetector: false },
  ]
  const window = new Map<string, Counts>([
    ['a', { ok: 1000, fail: 5, refused: 0 }],
    ['b', { ok: 90, fail: 10, refused: 0 }],
  ])
  const round = det.step(0, new Map([['b', { ok: 90, fail: 10, refused: 0 }]]), window, views)
  const b = round.evaluations.find((e) => e.id === 'b' && e.signal === 'fault')!
  t.equal(b.threshold, DETECTOR_DEFAULTS.probationThreshold)
  t.equal(b.reason, 'probation')
  t.ok(b.alarm, `statistic ${b.statistic.toFixed(1)}`)
  t.same(
    round.eject.map((e) => e.id),
    ['b'],
  )
})

t.test('false alarms with an estimated, trimmed reference stay near the arithmetic used to choose h', async (t) => {
  // Four healthy backends at 0.5%, 25 messages each per round, a 60-round window (1,500 messages per backend):
  // p0 is estimated from the others (less the worst), which costs some run length against the ideal test.
  const h = 6
  const ids = ['a', 'b', 'c', 'd']
  const views: BackendView[] = ids.map((id) => ({ id, inRotation: true, probation: false, outByDetector: false }))
  let total = 0
  const seeds = 30
  for (let seed = 1; seed <= seeds; seed++) {
    const det = new Detector({ ...DETECTOR_DEFAULTS, threshold: h, minFaults: 1, minReference: 50 })
    const rand = seededRandom(seed * 31)
    const history: Array<Map<string, Counts>> = []
    const window = new Map<string, Counts>(ids.map((id) => [id, { ok: 0, fail: 0, refused: 0 }]))
    let rounds = 0
    for (; rounds < 20_000; rounds++) {
      const inc = new Map<string, Counts>()
      for (const id of ids) {
        let fail = 0
        for (let i = 0; i < 25; i++) if (rand() < 0.005) fail++
        inc.set(id, { ok: 25 - fail, fail, refused: 0 })
        const w = window.get(id)!
        w.ok += 25 - fail
        w.fail += fail
      }
      history.push(inc)
      if (history.length > 60)
        for (const [id, c] of history.shift()!) {
          const w = window.get(id)!
          w.ok -= c.ok
          w.fail -= c.fail
        }
      const round = det.step(rounds, inc, window, views)
      if (round.eject.length > 0) break
    }
    total += (rounds + 1) * 25 * ids.length // messages per backend until a false alarm on any of the four, × 4
  }
  const perBackend = total / seeds
  const wald = falseAlarmRunLength(h, 0.005, alternativeRate(0.005, DETECTOR_DEFAULTS))
  t.ok(
    perBackend >= wald,
    `${Math.round(perBackend)} healthy messages per backend per false alarm ≥ ${Math.round(wald)}`,
  )
})
