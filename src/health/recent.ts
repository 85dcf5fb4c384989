// Attempt counts over the last few minutes, in fixed buckets: the "recent success ratio" and "messages per
// minute" an operator reads in `mxgate status`.

export class RecentCounter {
  private readonly ok: number[]
  private readonly fail: number[]
  private readonly stamps: number[]

  constructor(
    private readonly bucketMs = 10_000,
    private readonly buckets = 30,
  ) {
    this.ok = new Array(buckets).fill(0)
    this.fail = new Array(buckets).fill(0)
    this.stamps = new Array(buckets).fill(-1)
  }

  private slot(now: number): number {
    const n = Math.floor(now / this.bucketMs)
    const i = n % this.buckets
    if (this.stamps[i] !== n) {
      this.stamps[i] = n
      this.ok[i] = 0
      this.fail[i] = 0
    }
    return i
  }

  add(success: boolean, now = Date.now()): void {
    const i = this.slot(now)
    if (success) this.ok[i]!++
    else this.fail[i]!++
  }

  /** Sums over the whole span (buckets × bucketMs), leaving out buckets that have aged out. */
  totals(now = Date.now()): { ok: number; fail: number; spanMs: number } {
    const current = Math.floor(now / this.bucketMs)
    let ok = 0
    let fail = 0
    for (let i = 0; i < this.buckets; i++) {
      const s = this.stamps[i]!
      if (s >= 0 && current - s < this.buckets) {
        ok += this.ok[i]!
        fail += this.fail[i]!
      }
    }
    return { ok, fail, spanMs: this.bucketMs * this.buckets }
  }
}
