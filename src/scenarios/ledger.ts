// The scenario suite's bookkeeping, per recipient: what senders were told against what the backends and the
// smarthost hold. Pure, so "lost", "bounced" and "duplicates" come from tested code, not from the orchestration.
import type { Ledger } from './types'

/** What the sender saw for one message (the fields of SendResult this needs). */
export interface SentMessage {
  messageId: string
  to: string[]
  ok: boolean
  code: number | null
  error?: string
  /** Per-recipient replies to RCPT, as the sender saw them. */
  rcptReplies: { rcpt: string; code: number }[]
}

/** A message as a backend (or the smarthost) holds it. */
export interface HeldMessage {
  messageId: string | null
  to: string[]
  raw: Buffer
}

const key = (messageId: string, rcpt: string) => `${messageId} ${rcpt.toLowerCase()}`

/** The original Message-ID and failed recipients of an RFC 3464 DSN (from its headers part and status fields). */
export function readDsn(raw: Buffer): { messageId: string | null; recipients: string[] } {
  const text = raw.toString('latin1')
  const recipients = [...text.matchAll(/^Final-Recipient:\s*rfc822;\s*<?([^>\s]+)>?/gim)].map((m) => m[1] ?? '')
  // The DSN's own Message-ID comes first; the returned message's is inside its text/rfc822-headers part.
  const part = text.search(/^content-type:\s*(text\/rfc822-headers|message\/rfc822)/im)
  const inner = part === -1 ? null : /^message-id:\s*<([^>]+)>/im.exec(text.slice(part))
  return { messageId: inner?.[1] ?? null, recipients }
}

/** Counts per recipient: accepted (250 at RCPT and at the dot), delivered (any backend), DSN'd (smarthost). */
export function reckon(sent: readonly SentMessage[], backends: readonly HeldMessage[][], dsns: readonly HeldMessage[]) {
  const copies = new Map<string, number>()
  for (const held of backends) {
    for (const m of held) {
      if (m.messageId === null) continue
      for (const rcpt of m.to) copies.set(key(m.messageId, rcpt), (copies.get(key(m.messageId, rcpt)) ?? 0) + 1)
    }
  }
  const bounced = new Set<string>()
  for (const d of dsns) {
    const { messageId, recipients } = readDsn(d.raw)
    if (messageId !== null) for (const r of recipients) bounced.add(key(messageId, r))
  }

  const ledger: Ledger = {
    sent: sent.length,
    accepted: 0,
    tempFailed: 0,
    rejected: 0,
    noReply: 0,
    dsns: dsns.length,
    bounced: 0,
    lost: 0,
    lostSample: [],
    duplicates: 0,
  }
  for (const m of sent) {
    const refusedRcpt = m.rcptReplies.some((r) => r.code >= 500)
    if (m.ok) ledger.accepted++
    else if (m.error !== undefined || m.code === null) ledger.noReply++
    else if (m.code >= 500) ledger.rejected++
    else ledger.tempFailed++
    // A message accepted for some recipients but refused (5xx) for others still bounced for those.
    if (m.ok && refusedRcpt) ledger.rejected++
    if (!m.ok) continue
    for (const r of m.rcptReplies) {
      if (r.code < 200 || r.code >= 300) continue
      const k = key(m.messageId, r.rcpt)
      if (copies.has(k) || bounced.has(k)) continue
      ledger.lost++
      if (ledger.lostSample.length < 5) ledger.lostSample.push(`<${m.messageId}> to ${r.rcpt}`)
    }
  }
  for (const n of copies.values()) if (n > 1) ledger.duplicates += n - 1
  ledger.bounced = ledger.rejected + ledger.dsns
  return ledger
}
