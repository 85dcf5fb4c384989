// Percentiles and rep summaries. Pure functions so the maths is tested apart from any socket.

/**
 * Nearest-rank percentile of an ascending array (p in [0, 100]). Nearest-rank, not interpolated, so p99 of a run is
 * a latency some message really had. NaN for an empty array.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile p must be within 0..100, got ${p}`)
  const rank = Math.max(1, Math.ceil((p / 100) * n))
  return sorted[rank - 1] as number
}

/** Median of unsorted values, the mean of the middle two for an even count; NaN values are ignored. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  const n = v.length
  if (n === 0) return Number.NaN
  const mid = n >> 1
  return n % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2
}

export interface Spread {
  median: number
  min: number
  max: number
  /** How many values were not NaN. */
  n: number
}

/** Median and min–max over repetitions; NaN values (a rep that could not measure this) are left out. */
export function spread(values: readonly number[]): Spread {
  const v = values.filter((x) => !Number.isNaN(x))
  if (v.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length }
}

/** a / b, NaN when either is missing or b is 0: a ratio to a row that was not measured is not a number. */
export function ratio(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b) || b === 0) return Number.NaN
  return a / b
}
