// Verdicts of recipient verification, kept for their time to live: a bounded in-memory LRU in front of an optional
// shared store (Redis). Knows nothing of SMTP sessions; the verifier decides what goes in.
import type { SmtpReply } from '../backend/outcome'

/** What a backend (confirmed) said about an address: it exists, or it does not (with the reply to pass on). */
export type Verdict = { known: true } | { known: false; reply: SmtpReply }

export interface StoredVerdict {
  verdict: Verdict
  /** Epoch ms after which the verdict is no longer believed. */
  expiresAt: number
}

/** Verdicts shared between nodes. Never throws and never waits long: a miss or a failed lookup is null. */
export interface SharedVerdicts {
  get(key: string): Promise<StoredVerdict | null>
  set(key: string, stored: StoredVerdict): void
}

/** The cache key: the domain is case-insensitive, the local part is kept as sent (RFC 5321 §2.4). */
export function cacheKey(address: string): string {
  const at = address.lastIndexOf('@')
  return at < 0 ? address : `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase()}`
}

/** A size-bounded map that drops the least recently used entry first, and expired entries when read. */
export class Lru {
  private readonly map = new Map<string, StoredVerdict>()

  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size
  }

  get(key: string, now: number): StoredVerdict | null {
    const hit = this.map.get(key)
    if (hit === undefined) return null
    this.map.delete(key)
    if (hit.expiresAt <= now) return null
    this.map.set(key, hit) // most recently used last
    return hit
  }

  set(key: string, stored: StoredVerdict): void {
    this.map.delete(key)
    this.map.set(key, stored)
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value
      if (oldest === undefined) break
      this.map.delete(oldest)
    }
  }
}

export type CacheTier = 'memory' | 'shared'

export interface CacheSettings {
  size: number
  positiveTtlMs: number
  negativeTtlMs: number
}

export class VerdictCache {
  private readonly lru: Lru

  constructor(
    private readonly settings: CacheSettings,
    private readonly shared: SharedVerdicts | null,
    private readonly now: () => number = Date.now,
  ) {
    this.lru = new Lru(settings.size)
  }

  get entries(): number {
    return this.lru.size
  }

  /** The verdict for `key` and where it came from, or null. A shared hit is kept in memory for the rest of its life. */
  async get(key: string): Promise<{ verdict: Verdict; tier: CacheTier } | null> {
    const local = this.lru.get(key, this.now())
    if (local !== null) return { verdict: local.verdict, tier: 'memory' }
    if (this.shared === null) return null
    const remote = await this.shared.get(key)
    if (remote === null || remote.expiresAt <= this.now()) return null
    this.lru.set(key, remote)
    return { verdict: remote.verdict, tier: 'shared' }
  }

  /** Keeps a verdict: an address that exists for positive_ttl, one that does not for negative_ttl. */
  put(key: string, verdict: Verdict): void {
    const ttl = verdict.known ? this.settings.positiveTtlMs : this.settings.negativeTtlMs
    const stored = { verdict, expiresAt: this.now() + ttl }
    this.lru.set(key, stored)
    this.shared?.set(key, stored)
  }
}
