// Which admitted backend gets the next message: weighted random, discounted by messages already in flight.
// Weighted random (not strict least-loaded) so that a ramping backend gets its share even when the pool is idle.
import type { BackendConfig } from '../config/schema'
import type { Admission } from '../health/registry'

export interface AdmissionSource {
  admission(id: string): Admission
}

export class BackendPool {
  private readonly inFlight = new Map<string, number>()
  private readonly weights = new Map<string, number>()

  constructor(
    backends: BackendConfig[],
    private readonly health: AdmissionSource,
    private readonly random: () => number = Math.random,
  ) {
    for (const b of backends) {
      this.weights.set(b.id, b.weight)
      this.inFlight.set(b.id, 0)
    }
  }

  /** Picks a backend not in `avoid`, or null when none is admitted. Call begin/end around the delivery. */
  pick(avoid: ReadonlySet<string>): string | null {
    let total = 0
    const candidates: { id: string; score: number }[] = []
    for (const [id, weight] of this.weights) {
      if (avoid.has(id)) continue
      const a = this.health.admission(id)
      if (!a.allowed) continue
      // w / (1 + in flight): prefers the idle, yet never starves a busy backend entirely.
      const score = (weight * a.weightFactor) / (1 + (this.inFlight.get(id) ?? 0))
      if (score <= 0) continue
      candidates.push({ id, score })
      total += score
    }
    if (candidates.length === 0) return null
    let r = this.random() * total
    for (const c of candidates) {
      r -= c.score
      if (r < 0) return c.id
    }
    return candidates[candidates.length - 1]!.id
  }

  /** A backend joins the choice (a reload added it); its health decides its share (new backends start in probation). */
  add(b: BackendConfig): void {
    this.weights.set(b.id, b.weight)
    if (!this.inFlight.has(b.id)) this.inFlight.set(b.id, 0)
  }

  /** A reload changed its weight: the next pick uses it. */
  setWeight(id: string, weight: number): void {
    if (this.weights.has(id)) this.weights.set(id, weight)
  }

  /**
   * No new messages to it (a reload removed it). Its in-flight count stays until those messages end, so the
   * engine can wait for them before it lets the backend's client and health go.
   */
  remove(id: string): void {
    this.weights.delete(id)
  }

  /** Forgets a removed backend once nothing is in flight to it. */
  forget(id: string): void {
    if (!this.weights.has(id)) this.inFlight.delete(id)
  }

  begin(id: string): void {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1)
  }

  end(id: string): void {
    this.inFlight.set(id, Math.max(0, (this.inFlight.get(id) ?? 0) - 1))
  }

  inFlightOf(id: string): number {
    return this.inFlight.get(id) ?? 0
  }
}
