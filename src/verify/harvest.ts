// Directory-harvest guard: counts unknown-recipient refusals per client address in a fixed window; past the limit
// the client is cut off (421 and disconnect) until the window ends, so guessing mailboxes stops paying. Per process,
// bounded: the oldest addresses are forgotten first.

export interface HarvestSettings {
  /** Refusals per window before the cut-off; 0 = no limit. */
  limit: number
  windowMs: number
  /** Client addresses remembered at once. */
  maxClients?: number
}

const DEFAULT_MAX_CLIENTS = 100_000

export class HarvestGuard {
  private readonly counts = new Map<string, { n: number; since: number }>()
  private readonly maxClients: number

  constructor(
    private readonly settings: HarvestSettings,
    private readonly now: () => number = Date.now,
  ) {
    this.maxClients = settings.maxClients ?? DEFAULT_MAX_CLIENTS
  }

  private current(ip: string): { n: number; since: number } | null {
    const c = this.counts.get(ip)
    if (c === undefined) return null
    if (this.now() - c.since >= this.settings.windowMs) {
      this.counts.delete(ip)
      return null
    }
    return c
  }

  /** True when this client is over the limit now (cut it off before any lookup: no more answers to mine). */
  blocked(ip: string): boolean {
    if (this.settings.limit === 0) return false
    return (this.current(ip)?.n ?? 0) > this.settings.limit
  }

  /** Counts one unknown-recipient refusal; true when it takes the client over the limit. */
  refused(ip: string): boolean {
    if (this.settings.limit === 0) return false
    const c = this.current(ip)
    if (c === null) {
      this.counts.set(ip, { n: 1, since: this.now() })
      while (this.counts.size > this.maxClients) {
        const oldest = this.counts.keys().next().value
        if (oldest === undefined) break
        this.counts.delete(oldest)
      }
      return 1 > this.settings.limit
    }
    c.n++
    return c.n > this.settings.limit
  }
}
