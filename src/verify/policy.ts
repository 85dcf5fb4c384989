// Which recipients are checked with the backends, and which are answered without them. Pure: no I/O.

export interface RoutePolicy {
  skipDomains: readonly string[]
  /** Lower-case addresses; every domain named here is answered from this list alone. */
  staticRecipients: readonly string[]
}

export type Route = 'skip' | 'static-known' | 'static-unknown' | 'backends'

export class RecipientRoutes {
  private readonly skip: Set<string>
  private readonly listed: Set<string>
  private readonly listedDomains: Set<string>

  constructor(policy: RoutePolicy) {
    this.skip = new Set(policy.skipDomains)
    this.listed = new Set(policy.staticRecipients)
    this.listedDomains = new Set(policy.staticRecipients.map((a) => a.slice(a.lastIndexOf('@') + 1)))
  }

  /**
   * `user` is the local part as the sender gave it, `host` the domain ('' for bare <postmaster>). Postmaster is
   * never checked: every domain must take mail for it (RFC 5321 §4.5.1), and a backend may not list it.
   */
  route(user: string, host: string): Route {
    const domain = host.toLowerCase().replace(/\.$/, '')
    if (domain === '' || user.toLowerCase() === 'postmaster') return 'skip'
    if (this.skip.has(domain)) return 'skip'
    if (this.listedDomains.has(domain)) {
      return this.listed.has(`${user.toLowerCase()}@${domain}`) ? 'static-known' : 'static-unknown'
    }
    return 'backends'
  }
}
