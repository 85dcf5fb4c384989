// A fake backend's mailbox forwarding for canaries: every accepted message that carries an X-Mxgate-Canary header
// goes back to mxgate, by SMTP to its canary return address (as a forwarding rule would) or by the webhook (as a
// pipeline would once it processed the message). Messages the backend discarded are never forwarded.
import type { ReceivedMessage } from './fake-backend-session'
import { sendMessage } from './smtp-sender'

export type CanaryReturnTarget =
  | { smtp: { host: string; port: number; to: string; from?: string } }
  | { webhook: { url: string; token: string } }

/** The token in a received canary's header, or null for user mail. */
export function canaryHeaderToken(msg: ReceivedMessage): string | null {
  const end = msg.raw.indexOf('\r\n\r\n')
  const head = msg.raw.subarray(0, end === -1 ? msg.raw.length : end).toString('latin1')
  return /^X-Mxgate-Canary:\s*(\S+)/im.exec(head)?.[1] ?? null
}

export class CanaryForwarder {
  private readonly inFlight = new Set<Promise<void>>()
  /** Forwards tried, and those mxgate did not take (its reply or HTTP status, for tests to look at). */
  forwarded = 0
  readonly failures: string[] = []

  constructor(private readonly target: CanaryReturnTarget) {}

  /** Forwards `msg` when it is a canary; user mail is left alone. */
  take(msg: ReceivedMessage): void {
    const token = canaryHeaderToken(msg)
    if (token === null) return
    const p = this.forward(msg, token)
      .catch((err: unknown) => {
        this.failures.push(err instanceof Error ? err.message : String(err))
      })
      .finally(() => this.inFlight.delete(p))
    this.inFlight.add(p)
  }

  private async forward(msg: ReceivedMessage, token: string): Promise<void> {
    this.forwarded++
    if ('smtp' in this.target) {
      const t = this.target.smtp
      // A forward as a mailbox rule sends it: the message unchanged, a new envelope.
      const r = await sendMessage({ host: t.host, port: t.port, from: t.from ?? '', to: [t.to], message: msg.raw })
      if (!r.ok) this.failures.push(`${r.stage} ${r.reply}`)
      return
    }
    const w = this.target.webhook
    const res = await fetch(`${w.url.replace(/\/$/, '')}/api/canaries/${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.token}` },
    })
    if (!res.ok) this.failures.push(`HTTP ${res.status} ${await res.text()}`)
    else await res.arrayBuffer()
  }

  /** Waits for forwards under way (a backend's stop). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inFlight])
  }
}
