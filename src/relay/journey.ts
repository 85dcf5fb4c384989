// One message's bookkeeping across its attempts: who is still pending, who is settled and how, which backends were
// tried, and what the second opinion still waits for. Pure state; relay.ts decides what happens to it.
import type { RecipientReply, SmtpReply } from '../backend/outcome'
import type { AttemptRecord, Delivery } from './relay'

export class Journey {
  readonly attempts: AttemptRecord[] = []
  readonly deliveries: Delivery[] = []
  /** Recipients refused for good by a backend (the bounce path reports them). */
  readonly refused: RecipientReply[] = []
  /** An ambiguous refusal waits for a second backend's view: rcpt → who said it and what. */
  readonly ambiguity = new Map<string, { backendId: string; reply: SmtpReply }>()
  /** Backends already charged by a second opinion for this message (once each). */
  readonly charged = new Set<string>()
  /**
   * Every backend whose refusal of a recipient waits for another's view: all of them are charged if another backend
   * takes it (a suspect backend's refusal does not count as confirming an earlier one).
   */
  readonly refusers = new Map<string, string[]>()
  /** Attempts whose count in the shared outcome counters waits for the second opinion: backend → refused flag. */
  readonly unsettled = new Map<string, boolean>()
  /** Backends tried for this message, never the same one twice, and those it must not go to at all. */
  readonly avoid: Set<string>
  /** Recipients no backend has settled yet. */
  pending: string[]
  /**
   * Recipients refused temporarily for their own reasons (mailbox full, greylisted) are not tried on another
   * backend — the backends share the mailbox store, so the answer would be the same — but deferred.
   */
  readonly held: string[] = []
  tempReply: SmtpReply | null = null
  /** Why the last backend did not take the pending recipients (for the deferral's log line). */
  reason = 'no backend is available'
  /** Attempts that count against max_attempts. */
  tries = 0

  constructor(
    to: readonly string[],
    private readonly secondOpinion: boolean,
    avoid: readonly string[] = [],
  ) {
    this.pending = [...to]
    this.avoid = new Set(avoid)
  }

  refuse(rcpt: string, reply: SmtpReply): void {
    this.refused.push({ rcpt, reply })
    this.ambiguity.delete(rcpt)
    this.refusers.delete(rcpt)
  }

  hold(rcpt: string, reply: SmtpReply): void {
    this.held.push(rcpt)
    this.tempReply = reply
  }

  /**
   * A recipient refused ambiguously: if another backend said the same, it is the recipient's; else ask again.
   * A suspect backend's refusal is never passed on on its word alone, and never confirms another's.
   */
  ambiguous(rcpt: string, backendId: string, reply: SmtpReply, suspect = false): boolean {
    if (!this.secondOpinion && !suspect) {
      this.refuse(rcpt, reply)
      return false
    }
    const earlier = this.ambiguity.get(rcpt)
    if (earlier && earlier.backendId !== backendId && !suspect) {
      this.refuse(rcpt, reply)
      return false
    }
    this.ambiguity.set(rcpt, { backendId, reply })
    this.refusers.set(rcpt, [...(this.refusers.get(rcpt) ?? []), backendId])
    return true
  }
}
