// One opossum circuit breaker per backend, fed only by backend faults (see relay/classify.ts).
// opossum owns the rolling window, the threshold and the half-open timer; HealthRegistry owns what they mean.
import CircuitBreaker from 'opossum'
import type { DeliveryAttempt } from '../backend/outcome'
import type { MxgateConfig } from '../config/schema'

export type BreakerSettings = MxgateConfig['breaker']

/** Thrown inside the breaker so opossum counts the attempt as a failure; never escapes BackendBreaker. */
export class BackendFault extends Error {
  readonly code = 'EBACKENDFAULT'
  constructor(
    readonly attempt: DeliveryAttempt,
    readonly reason: string,
  ) {
    super(reason)
    this.name = 'BackendFault'
  }
}

type Action = (
  fn: () => Promise<DeliveryAttempt>,
  faultOf: (a: DeliveryAttempt) => string | null,
) => Promise<DeliveryAttempt>

const action: Action = async (fn, faultOf) => {
  const attempt = await fn()
  const reason = faultOf(attempt)
  if (reason !== null) throw new BackendFault(attempt, reason)
  return attempt
}

export interface WindowStats {
  attempts: number
  faults: number
}

export class BackendBreaker {
  readonly cb: CircuitBreaker<Parameters<Action>, DeliveryAttempt>

  constructor(
    readonly backendId: string,
    settings: BreakerSettings,
    /** How long the next ejection should last; read just before opossum may open. */
    nextEjectionMs: () => number,
  ) {
    this.cb = new CircuitBreaker(action, {
      name: backendId,
      timeout: false, // the backend client enforces per-stage timeouts and the message deadline
      errorThresholdPercentage: settings.errorThresholdPercent,
      rollingCountTimeout: settings.windowMs,
      rollingCountBuckets: settings.windowBuckets,
      volumeThreshold: settings.minVolume,
      resetTimeout: nextEjectionMs(),
      errorFilter: (err: unknown) => !(err instanceof BackendFault),
    })
    // opossum reads resetTimeout when it opens, right after emitting 'failure': set it there so repeated
    // ejections grow. ('failure' listeners run synchronously before opossum decides to open.)
    this.cb.on('failure', () => {
      this.setResetTimeout(nextEjectionMs())
    })
  }

  /**
   * A reload changed the threshold or the minimum volume: opossum reads `options.errorThresholdPercentage` and its
   * volume threshold at each failure, so they apply from the next attempt. The window (length, buckets) is built
   * once and needs a restart.
   */
  retune(settings: Pick<BreakerSettings, 'errorThresholdPercent' | 'minVolume'>): void {
    const cb = this.cb as unknown as Record<string | symbol, unknown> & { options: Record<string, unknown> }
    cb.options.errorThresholdPercentage = settings.errorThresholdPercent
    const volume = Object.getOwnPropertySymbols(cb).find((s) => s.description === 'volume-threshold')
    if (volume !== undefined) cb[volume] = settings.minVolume
  }

  // opossum reads `options.resetTimeout` each time it opens; @types/opossum does not declare `options`.
  private setResetTimeout(ms: number): void {
    ;(this.cb as unknown as { options: { resetTimeout: number } }).options.resetTimeout = ms
  }

  /** The ejection time opossum used (or will use) for the current open period. */
  get resetTimeoutMs(): number {
    return (this.cb as unknown as { options: { resetTimeout: number } }).options.resetTimeout
  }

  /**
   * Runs one delivery through the breaker. Resolves the attempt (fault or not), or null when the breaker refused
   * to run it (open, or half-open with its single trial already taken).
   */
  async run(
    fn: () => Promise<DeliveryAttempt>,
    faultOf: (a: DeliveryAttempt) => string | null,
  ): Promise<DeliveryAttempt | null> {
    try {
      return await this.cb.fire(fn, faultOf)
    } catch (err) {
      if (err instanceof BackendFault) return err.attempt
      if (CircuitBreaker.isOurError(err as Error)) return null
      throw err
    }
  }

  get state(): 'closed' | 'open' | 'half-open' {
    if (this.cb.opened) return 'open'
    if (this.cb.halfOpen) return 'half-open'
    return 'closed'
  }

  window(): WindowStats {
    const s = this.cb.stats
    return { attempts: s.successes + s.failures, faults: s.failures }
  }

  open(ejectionMs: number): void {
    this.setResetTimeout(ejectionMs)
    this.cb.open()
  }

  close(): void {
    this.cb.close()
  }

  shutdown(): void {
    this.cb.shutdown()
  }
}
