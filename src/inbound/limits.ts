// What one node grants the internet at once: connections (in all and per client address), messages per connection,
// errors per connection, time and rate for DATA, and memory for messages in flight. Pure counters and arithmetic: no
// Haraka, no sockets.

export interface InboundLimits {
  maxConnections: number
  maxConnectionsPerIp: number
  maxMessagesPerConnection: number
  /** Error replies a connection may earn without delivering a message (0 = no limit). */
  maxErrors: number
  /** Junk commands (isJunkCommand) before each further one counts as an error (0 = no limit). */
  maxJunkCommands: number
  /** The whole DATA phase, from 354 to the final dot. */
  dataTimeoutMs: number
  /** Bytes per second a sender must keep up during DATA once `dataRateGraceMs` has passed (0 = no floor). */
  minDataRate: number
  dataRateGraceMs: number
  /** Message bytes held in memory across all connections, from the first DATA line until the reply. */
  maxMessageMemory: number
}

export type ConnectionRefusal = 'total' | 'per-ip'

/** Counts open connections in all and per client address. */
export class ConnectionGate {
  private total = 0
  private readonly perIp = new Map<string, number>()

  constructor(private readonly limits: Pick<InboundLimits, 'maxConnections' | 'maxConnectionsPerIp'>) {}

  /** Takes a slot for `ip`, or says which limit is full (and takes nothing). */
  open(ip: string): ConnectionRefusal | null {
    if (this.total >= this.limits.maxConnections) return 'total'
    const mine = this.perIp.get(ip) ?? 0
    if (mine >= this.limits.maxConnectionsPerIp) return 'per-ip'
    this.total++
    this.perIp.set(ip, mine + 1)
    return null
  }

  close(ip: string): void {
    const mine = this.perIp.get(ip) ?? 0
    if (mine <= 0) return
    this.total--
    if (mine === 1) this.perIp.delete(ip)
    else this.perIp.set(ip, mine - 1)
  }

  get counts(): { total: number; ips: number } {
    return { total: this.total, ips: this.perIp.size }
  }
}

/** A byte budget shared by every connection's message in flight. */
export class MemoryBudget {
  private held = 0

  /** A reload may change it: bytes already held stay held, the next reservation meets the new limit. */
  constructor(public limit: number) {}

  /** Takes `n` bytes if they fit; false (and nothing taken) when they do not. */
  reserve(n: number): boolean {
    if (this.held + n > this.limit) return false
    this.held += n
    return true
  }

  release(n: number): void {
    this.held = Math.max(0, this.held - n)
  }

  get inUse(): number {
    return this.held
  }
}

/**
 * Is a DATA phase that began at `startedAt` and has brought `bytes` so far out of time at `now`? Null when it may go
 * on; otherwise why not. The rate floor applies after the grace period to the whole phase (bytes / elapsed), so a
 * sender that pauses briefly is not cut off, but one that trickles is.
 */
export function dataOverdue(
  startedAt: number,
  bytes: number,
  now: number,
  limits: Pick<InboundLimits, 'dataTimeoutMs' | 'minDataRate' | 'dataRateGraceMs'>,
): 'deadline' | 'rate' | null {
  const elapsed = now - startedAt
  if (elapsed >= limits.dataTimeoutMs) return 'deadline'
  if (limits.minDataRate > 0 && elapsed > limits.dataRateGraceMs && (bytes * 1000) / elapsed < limits.minDataRate) {
    return 'rate'
  }
  return null
}

/**
 * Does a reply to a command count against the client's error allowance? A permanent refusal does (an unknown command,
 * bad syntax or sequence, a relay attempt, an unknown recipient): the client's mistake. A 4xx does not: it says mxgate
 * or a backend cannot take something now (a recipient check that timed out, `452 4.5.3` for recipients beyond
 * `max_recipients`, a 421 that closes the connection anyway). Replies to the end of DATA never count (the caller
 * leaves them out): the client finished a transaction, whatever a backend made of it.
 */
export function countsAsError(code: number): boolean {
  return code >= 500 && code < 600
}

/** Commands that move no mail: a client that sends only these is keeping a connection slot for nothing. */
export function isJunkCommand(line: string): boolean {
  return /^(?:NOOP|RSET|VRFY|HELP|EXPN|ETRN)(?:\s|$)/i.test(line)
}
