// The detector's scenarios (issue 9): what each row sets up and what it must show. run.ts plays them.
import type { FaultRule } from '../testing/fault-rules'

export interface ScenarioBackend {
  weight?: number
  faults?: FaultRule[]
}

export interface Scenario {
  name: string
  backends: ScenarioBackend[]
  /** Backend ids (b1, b2, …) the detector should eject; any other detector ejection is a false one. */
  targets: string[]
  /** Messages sent at most (pooled over both nodes). */
  max: number
  /** Stop early once this many targets are out. */
  stopAfter?: number
  observe?: boolean
  /** What the row must show, for the table. */
  expect: string
}

const at = (stage: 'dot' | 'rcpt', reply: string, probability: number): FaultRule => ({
  stage,
  action: 'reply',
  reply,
  probability,
})
const soft = (p: number) => at('dot', '451 4.3.0 Temporary failure', p)
const healthy = (): ScenarioBackend => ({ faults: [soft(0.005)] })

export function scenarios(scale: number): Scenario[] {
  const n = (x: number) => Math.max(100, Math.round(x * scale))
  return [
    {
      name: '4 at 0.5% 451; one also 451 4.3.0 to 3% at end of data',
      backends: [healthy(), healthy(), { faults: [soft(0.005), soft(0.03)] }, healthy()],
      targets: ['b3'],
      max: n(3000),
      stopAfter: 1,
      expect: 'b3 out within 3,000; no other',
    },
    {
      name: '4; one answers 550 5.1.1 to 3% of real users at RCPT',
      backends: [{}, {}, { faults: [at('rcpt', '550 5.1.1 No such user', 0.03)] }, {}],
      targets: ['b3'],
      max: n(3000),
      stopAfter: 1,
      expect: 'b3 out within 3,000; 0 bounced',
    },
    {
      name: '4; one answers 550 5.7.1 to 3% at RCPT',
      backends: [{}, {}, { faults: [at('rcpt', '550 5.7.1 Relaying denied', 0.03)] }, {}],
      targets: ['b3'],
      max: n(3000),
      stopAfter: 1,
      expect: 'b3 out within 3,000; 0 bounced',
    },
    {
      name: '4, all at 0.5% 451',
      backends: [healthy(), healthy(), healthy(), healthy()],
      targets: [],
      max: n(10_000),
      expect: '0 ejections (issue: 50,000 messages; SCENARIO_SCALE=5)',
    },
    {
      name: '2 backends; one fails 5%',
      backends: [healthy(), { faults: [soft(0.05)] }],
      targets: ['b2'],
      max: n(3000),
      stopAfter: 1,
      expect: 'b2 out within 3,000',
    },
    {
      name: '5, weights 100/100/100/50/10; the weight-10 one fails 5%',
      backends: [
        { weight: 100, ...healthy() },
        { weight: 100, ...healthy() },
        { weight: 100, ...healthy() },
        { weight: 50, ...healthy() },
        { weight: 10, faults: [soft(0.05)] },
      ],
      targets: ['b5'],
      max: n(30_000),
      stopAfter: 1,
      expect: 'b5 out within 1,500 of its own messages',
    },
    {
      name: '4, all fail 20%',
      backends: [0, 1, 2, 3].map(() => ({ faults: [soft(0.2)] })),
      targets: [],
      max: n(1500),
      expect: 'no detector ejection; degraded; 0 lost',
    },
    {
      name: '4; two fail 3%',
      backends: [{ faults: [soft(0.03)] }, healthy(), { faults: [soft(0.03)] }, healthy()],
      targets: ['b1', 'b3'],
      max: n(4000),
      expect: 'at most 1 (the budget) out; freeze flagged; 0 lost',
    },
    {
      name: 'observe mode; one fails 3%',
      backends: [healthy(), healthy(), { faults: [soft(0.03)] }, healthy()],
      targets: ['b3'],
      max: n(6000),
      observe: true,
      expect: '"would eject" b3; nothing ejected',
    },
  ]
}
