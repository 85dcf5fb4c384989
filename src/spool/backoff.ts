// Retry schedule for spooled mail: exponential backoff, capped, with jitter so that messages spooled together
// during one outage do not all come back in the same second when a backend is admitted again.
import { SpoolConfigError } from './errors'

export interface BackoffOptions {
  /** Delay after the first failed attempt, before jitter. */
  firstMs: number
  /** Cap on the delay, before jitter. */
  maxMs: number
  /** Share of the delay that is random: 0 = none, 1 = "full jitter" (uniform over [0, delay]). */
  jitter: number
}

/**
 * Milliseconds to wait after failed attempt number `attempt` (1 = the first failure).
 * Scaled full jitter: ceiling = min(maxMs, firstMs * 2^(attempt-1)); result is uniform in
 * [ceiling * (1 - jitter), ceiling]. jitter = 1 is AWS-style full jitter, 0.5 is "equal jitter", 0 is plain doubling.
 * (Decorrelated jitter needs the previous delay as state; this keeps the schedule a pure function of the count.)
 */
export function nextAttemptDelay(attempt: number, opts: BackoffOptions, rand: () => number = Math.random): number {
  const { firstMs, maxMs, jitter } = opts
  if (!Number.isFinite(firstMs) || firstMs < 0) throw new SpoolConfigError('backoff.firstMs', 'must be >= 0')
  if (!Number.isFinite(maxMs) || maxMs < firstMs) throw new SpoolConfigError('backoff.maxMs', 'must be >= firstMs')
  if (!(jitter >= 0 && jitter <= 1)) throw new SpoolConfigError('backoff.jitter', 'must be between 0 and 1')
  const n = Number.isFinite(attempt) ? Math.max(1, Math.floor(attempt)) : 1
  // 2^(n-1) overflows to Infinity for huge n, which Math.min turns into maxMs.
  const ceiling = Math.min(maxMs, firstMs * 2 ** (n - 1))
  const r = Math.min(1, Math.max(0, rand()))
  return Math.round(ceiling * (1 - jitter) + ceiling * jitter * r)
}
