// Canaries on their way: a unique token per canary, the backend it went through, when its 250 came and by when it
// must be back. Pure bookkeeping: no timers, no I/O (the scheduler asks `expire` on its own clock).
import { randomBytes } from 'node:crypto'

/** `mxc-` and 24 hex digits: unguessable, and easy to find in a forwarded message's headers or body. */
export const TOKEN_RE = /\bmxc-[0-9a-f]{24}\b/

export function newToken(): string {
  return `mxc-${randomBytes(12).toString('hex')}`
}

export interface PendingCanary {
  token: string
  backendId: string
  /** When it was sent, then when the backend answered 250 for it: the round trip is measured from here. */
  acceptedAt: number
  /** False until the backend's 250 (a return may overtake the reply on a fast path: it still counts). */
  accepted: boolean
  deadline: number
}

export type ReturnResult =
  | { kind: 'returned'; canary: PendingCanary; roundTripMs: number }
  /** Not pending here: a second copy, one that came back after its deadline, or another node's. */
  | { kind: 'unknown' }

export class PendingTokens {
  private readonly pending = new Map<string, PendingCanary>()
  /** Tokens of this process already counted (returned, lost, forgotten), until when they are remembered. */
  private readonly done = new Map<string, number>()

  constructor(private readonly timeoutMs: number) {}

  /** A canary about to be sent; `sendDeadline` bounds the delivery (its loss clock starts at the 250). */
  add(token: string, backendId: string, now: number, sendDeadline: number): PendingCanary {
    const c = { token, backendId, acceptedAt: now, accepted: false, deadline: sendDeadline + this.timeoutMs }
    this.pending.set(token, c)
    return c
  }

  /** The backend answered 250: the canary must be back within the timeout from now. False if it already is. */
  accepted(token: string, now: number): boolean {
    const c = this.pending.get(token)
    if (!c) return false
    c.accepted = true
    c.acceptedAt = now
    c.deadline = now + this.timeoutMs
    return true
  }

  /** The backend did not take it: not a canary on its way. */
  drop(token: string): void {
    this.pending.delete(token)
  }

  /** A token came back; counted once. */
  returned(token: string, now: number): ReturnResult {
    const c = this.pending.get(token)
    if (!c) return { kind: 'unknown' }
    this.pending.delete(token)
    this.remember(token, now)
    return { kind: 'returned', canary: c, roundTripMs: Math.max(0, now - c.acceptedAt) }
  }

  /** Canaries past their deadline, removed: each is lost once. */
  expire(now: number): PendingCanary[] {
    const lost: PendingCanary[] = []
    for (const c of this.pending.values()) if (c.deadline <= now) lost.push(c)
    for (const c of lost) {
      this.pending.delete(c.token)
      this.remember(c.token, now)
    }
    for (const [token, until] of this.done) if (until <= now) this.done.delete(token)
    return lost
  }

  /** Forgets a backend's canaries (it was ejected: what it lost is already acted on, the rest would count twice). */
  forget(backendId: string): number {
    let n = 0
    for (const [token, c] of this.pending) {
      if (c.backendId !== backendId) continue
      this.pending.delete(token)
      this.remember(token, Date.now())
      n++
    }
    return n
  }

  /** A token this process sent and already counted: a copy coming back now is late or repeated, not another's. */
  settled(token: string): boolean {
    return this.done.has(token)
  }

  private remember(token: string, now: number): void {
    this.done.set(token, now + this.timeoutMs)
  }

  count(backendId?: string): number {
    if (backendId === undefined) return this.pending.size
    let n = 0
    for (const c of this.pending.values()) if (c.backendId === backendId) n++
    return n
  }
}
