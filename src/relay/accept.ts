// Taking responsibility for a message: relay it inline, and when no backend took every recipient before the
// deadline, make it durable in the spool. The sender hears 250 only after a backend's 250 or a durable write.
import type { RecipientReply } from '../backend/outcome'
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { dsnAllowed } from '../spool/dsn'
import { isSpoolError, type SpoolError } from '../spool/errors'
import type { LastError } from '../spool/format'
import type { SpoolStore } from '../spool/store'
import type { AttemptRecord, JournalPort, Relay, RelayResult } from './relay'

export type AcceptResult =
  | { outcome: 'relayed'; relay: RelayResult }
  /** Durable in the spool: pending recipients are retried later; refused ones get a DSN. */
  | { outcome: 'spooled'; spoolId: string; relay: RelayResult }
  /** The spool could not take it (full, disk error): the sender must keep the message. */
  | { outcome: 'spool-failed'; error: SpoolError; relay: RelayResult }

export function lastErrors(attempts: AttemptRecord[], now = Date.now()): LastError[] {
  return attempts
    .filter((a) => a.verdict !== 'delivered')
    .map((a) => ({ backendId: a.backendId, stage: a.verdict, message: a.detail, at: now }))
}

export function bounceReplies(refused: RecipientReply[]): { rcpt: string; reply: string }[] {
  return refused.map((r) => ({
    rcpt: r.rcpt,
    reply: `${r.reply.code} ${r.reply.enhanced ?? ''} ${r.reply.lines.join(' ')}`.replace(/\s+/g, ' ').trim(),
  }))
}

export class Acceptor {
  constructor(
    private readonly relay: Relay,
    private readonly spool: SpoolStore | null,
    private readonly retryFirstMs: number,
    private readonly log: Logger,
    private readonly journal: JournalPort | null = null,
  ) {}

  /** Relays or spools `msg`; what backends took of a message whose sender hears 250 goes to the journal. */
  async accept(msg: InboundMessage): Promise<AcceptResult> {
    const accepted = await this.decide(msg)
    if (accepted.outcome !== 'spool-failed' && accepted.relay.deliveries.length > 0) {
      this.journal?.delivered(msg, accepted.relay.deliveries)
    }
    return accepted
  }

  private async decide(msg: InboundMessage): Promise<AcceptResult> {
    const result = await this.relay.relay(msg)
    const needsBounce = result.refused.length > 0
    switch (result.outcome) {
      case 'rejected':
        return { outcome: 'relayed', relay: result }
      case 'delivered':
        // The sender hears 250, so the recipients a backend refused for good are owed a DSN: record that durably
        // before answering. If the spool cannot take it, the sender hears 4xx instead and keeps the message: the
        // refused recipients are then reported by the sender's own retry. The recipients already delivered get the
        // message again when the sender retries; a duplicate is better than a refusal nobody hears of.
        if (needsBounce && this.spool && dsnAllowed(msg.envelope)) {
          try {
            await this.spoolForBounce(msg, result)
          } catch (err) {
            if (!isSpoolError(err)) throw err
            this.log.error(
              { id: msg.id, err, delivered: result.deliveries.flatMap((d) => d.recipients) },
              'could not record refused recipients for a DSN; answering 4xx (the delivered recipients will get a duplicate)',
            )
            return { outcome: 'spool-failed', error: err, relay: result }
          }
        }
        return { outcome: 'relayed', relay: result }
      case 'deferred':
        // A temporary refusal of the whole message for its own reasons goes back to the sender, who retries.
        if (result.reply !== null && result.deliveries.length === 0 && !needsBounce) {
          return { outcome: 'relayed', relay: result }
        }
        if (!this.spool) return { outcome: 'relayed', relay: result }
        try {
          // One durable write: the refused recipients' DSN is recorded with the pending ones, not after them.
          const entry = await this.spool.write(msg, {
            pending: result.pending,
            attempts: 1,
            nextAttemptAt: Date.now() + this.retryFirstMs,
            lastErrors: lastErrors(result.attempts),
            bounced: bounceReplies(result.refused),
          })
          return { outcome: 'spooled', spoolId: entry.id, relay: result }
        } catch (err) {
          if (isSpoolError(err)) return { outcome: 'spool-failed', error: err, relay: result }
          throw err
        }
    }
  }

  private async spoolForBounce(msg: InboundMessage, result: RelayResult): Promise<void> {
    if (!this.spool) return
    await this.spool.write(msg, {
      pending: [],
      lastErrors: lastErrors(result.attempts),
      bounced: bounceReplies(result.refused),
    })
  }
}
