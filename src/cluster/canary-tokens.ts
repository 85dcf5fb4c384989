// Canary tokens known to one process's store: sent (by this process, or by a worker through the IPC hub) and
// reported back, each for a limited time. The memory store, the IPC hub and the IPC store keep theirs here.
import type { CanaryShareResult } from './types'

/** A whole canary token (src/canary/tokens.ts makes them): what a store accepts from another process. */
export const TOKEN_SHAPE = /^mxc-[0-9a-f]{24}$/

interface Entry {
  sent: boolean
  returnedAt: number | null
  expires: number
}

/** Entries past this many are pruned on the next write even before they expire: a flood of bogus tokens is bounded. */
const MAX_ENTRIES = 100_000

export class CanaryTokenBook {
  private readonly entries = new Map<string, Entry>()
  private prunedAt = 0

  sent(token: string, ttlMs: number, now = Date.now()): void {
    this.prune(now)
    const e = this.entries.get(token)
    if (e) e.sent = true
    else this.entries.set(token, { sent: true, returnedAt: null, expires: now + ttlMs })
  }

  /** Notes a return; says whether a sender had registered the token, or it had come back before. */
  returned(token: string, at: number, ttlMs: number, now = Date.now()): Exclude<CanaryShareResult, 'unreachable'> {
    this.prune(now)
    const e = this.entries.get(token)
    if (e?.returnedAt != null) return 'repeated'
    if (e) {
      e.returnedAt = at
      e.expires = Math.max(e.expires, now + ttlMs)
      return e.sent ? 'claimed' : 'unknown'
    }
    this.entries.set(token, { sent: false, returnedAt: at, expires: now + ttlMs })
    return 'unknown'
  }

  returnOf(token: string, now = Date.now()): number | null {
    const e = this.entries.get(token)
    return e !== undefined && e.expires > now ? e.returnedAt : null
  }

  get size(): number {
    return this.entries.size
  }

  private prune(now: number): void {
    if (now - this.prunedAt < 1000 && this.entries.size <= MAX_ENTRIES) return
    this.prunedAt = now
    for (const [token, e] of this.entries) if (e.expires <= now) this.entries.delete(token)
    // Oldest first (insertion order) when over the cap.
    for (const token of this.entries.keys()) {
      if (this.entries.size <= MAX_ENTRIES) break
      this.entries.delete(token)
    }
  }
}
