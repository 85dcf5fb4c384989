// The incident the demo plays: four backends, mx3 a quiet few-percent failer that only the outlier detector can
// catch, mx4 going down hard while mx3 is out, and mx3 fixed later. What the backends do and when each step is due;
// the demo (demo.ts) applies the steps. Pure: no I/O, no timers.
import type { FaultRule } from '../testing/fault-rules'

export const BACKEND_IDS = ['mx1', 'mx2', 'mx3', 'mx4'] as const
export type BackendId = (typeof BACKEND_IDS)[number]

/** Seeds for the fake backends' fault dice: mx3's faults fall on the same of its messages every run. */
export const BACKEND_SEEDS: Record<BackendId, number> = { mx1: 1, mx2: 2, mx3: 3, mx4: 4 }

/**
 * mx3's misconfiguration: a 451 4.3.0 after the data of 5% of its messages, and nothing else wrong (its probes
 * pass). The breaker (eject when 50% of a backend's attempts within 10 s fail) never trips on that. The detector
 * does: against a clean pool a fault weighs ln(p1/p0) ≈ +3.2 and a good message ≈ −0.025 (README "How the detector
 * decides"), so at 5% the statistic climbs ≈ 0.14 a message and passes h = 16, with at least 8 faults behind it,
 * after roughly 150–250 of mx3's own messages: about 1,000 messages in all with four backends. At 3% it would need
 * ≈ 550 of its own, more than a demo-sized run gives it reliably.
 */
export const MX3_FAULT_RATE = 0.05
export const MX3_FAULT: FaultRule = {
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Internal configuration error',
  probability: MX3_FAULT_RATE,
}

/**
 * mx4 going down hard: its port refuses connections, and the sessions mxgate already holds are cut at their next
 * MAIL (a crashed server keeps no connection). Cut at MAIL, before any message data, so no message is left in the
 * "did it arrive?" state: mxgate fails over at once and the summary can count duplicates exactly.
 */
export const MX4_DOWN: FaultRule[] = [
  { stage: 'connect', action: 'refuse' },
  { stage: 'mail', action: 'drop' },
]

export type IncidentStep = 'mx4-down' | 'fix-mx3'

export interface IncidentProgress {
  /** Messages whose result the sender has. */
  done: number
  /** The detector has ejected mx3 (at least once). */
  mx3CaughtByDetector: boolean
  /** mx4 has been ejected (by its breaker, as the script means it to be). */
  mx4Ejected: boolean
}

/**
 * When each step is due, each once:
 *  - mx4 goes down right after the detector ejects mx3. With four backends the detector may have one out at a time
 *    (`detector.budget` 33%), and mx3 holds it while ejected: the detector would eject mx4 too but holds back, and
 *    mx4 is caught by its breaker, as README "Budget, degraded pool, observe" promises. (Were the budget free, the
 *    detector would beat the breaker to a backend refusing everything: each fault weighs +3.2, so it is over h
 *    within a round.) The breaker needs a few seconds of refusals to outweigh mx4's good attempts in its 10 s
 *    window, hence the demo's 10 s first ejection.
 *  - mx3 is fixed while it is out, once both ejections are on screen (or half-way through the messages, if the
 *    breaker has not caught mx4 by then): it comes back through probe, trial and probation healthy. Fixed later,
 *    it would come back still failing (its probes pass) after its 10 s ejection, and probation's 100 good
 *    messages at 5% of its weight need traffic for another ~25 s after that.
 */
export class IncidentScript {
  private readonly done = new Set<IncidentStep>()

  constructor(private readonly count: number) {}

  due(p: IncidentProgress): IncidentStep[] {
    const steps: IncidentStep[] = []
    const take = (step: IncidentStep, when: boolean) => {
      if (when && !this.done.has(step)) {
        this.done.add(step)
        steps.push(step)
      }
    }
    take('mx4-down', p.mx3CaughtByDetector)
    take('fix-mx3', p.mx3CaughtByDetector && (p.mx4Ejected || p.done >= Math.ceil(this.count / 2)))
    return steps
  }
}
