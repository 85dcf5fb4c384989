// Delivery status notifications (RFC 3464) for recipients mxgate accepted but could not deliver. They go to a
// configured smarthost — mxgate itself only talks to its own backends, which do not accept mail for the internet.
import { randomUUID } from 'node:crypto'
import { BackendClient, type ClientOptions } from '../backend/client'
import { replyText } from '../backend/outcome'
import type { HostPort } from '../config/units'
import type { Logger } from '../log'
import { buildDsn, dsnAllowed, headerSection } from '../spool/dsn'
import type { SpoolEntry } from '../spool/format'

export type BounceResult = { sent: true } | { sent: false; skipped: true; why: string } | { sent: false; error: string }

export class BounceSender {
  private readonly client: BackendClient | null

  constructor(
    relay: HostPort | null,
    options: ClientOptions,
    private readonly hostname: string,
    private readonly log: Logger,
  ) {
    this.client = relay ? new BackendClient({ id: 'bounce-relay', ...relay }, options, log) : null
  }

  get configured(): boolean {
    return this.client !== null
  }

  /** Sends one DSN for `failed` recipients of `entry`; a message from the null sender gets none (RFC 3461). */
  async send(
    entry: SpoolEntry,
    body: Buffer,
    failed: { rcpt: string; reply: string; status?: string }[],
  ): Promise<BounceResult> {
    const envelope = { from: entry.from, to: entry.to }
    if (!dsnAllowed(envelope)) return { sent: false, skipped: true, why: 'the message had a null sender (<>)' }
    if (!this.client) return { sent: false, error: 'no bounce relay configured (spool.bounce_relay)' }
    const dsn = buildDsn({
      reportingMta: this.hostname,
      originalEnvelope: envelope,
      // mxgate gives a recipient up only for good: even a 4.x.x status (4.4.7, expired) is reported as failed.
      failedRecipients: failed.map((f) => ({
        rcpt: f.rcpt,
        status: f.status ?? /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(f.reply)?.[1] ?? '5.0.0',
        diagnostic: f.reply,
        action: 'failed' as const,
      })),
      arrivalDate: entry.receivedAt,
      originalHeaders: headerSection(body),
      messageId: `${randomUUID()}@${this.hostname}`,
    })
    const attempt = await this.client.deliver({ from: '', to: [entry.from] }, dsn, Date.now() + 60_000)
    if (attempt.ok) {
      this.log.info({ id: entry.id, to: entry.from, recipients: failed.map((f) => f.rcpt) }, 'bounce sent')
      return { sent: true }
    }
    const why = attempt.failure?.message ?? (attempt.refused[0] ? replyText(attempt.refused[0].reply) : 'refused')
    return { sent: false, error: `bounce relay refused the DSN: ${why}` }
  }

  async close(): Promise<void> {
    await this.client?.close()
  }
}
