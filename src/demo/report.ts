// The demo's bookkeeping: what the sender was told against what the backends hold. Pure, so the numbers the
// summary line promises (lost 0, duplicates 0) are computed by tested code, not by the orchestration.

/** What the sender saw for one message (the fields of SendResult the summary needs). */
export interface SendOutcome {
  ok: boolean
  code: number | null
  /** Set when the connection failed rather than the server answering. */
  error?: string
}

export interface SummaryInput {
  /** Messages the demo meant to send. */
  requested: number
  /** Message-ID of message i (without angle brackets). */
  messageIds: readonly string[]
  /** What the sender saw for message i; undefined when it was never sent (time limit, interrupted). */
  outcomes: readonly (SendOutcome | undefined)[]
  /** Message-IDs each backend received, by backend id, in the order the backends are shown. */
  received: ReadonlyMap<string, readonly (string | null)[]>
}

export interface Summary {
  requested: number
  sent: number
  /** 250 after the final dot: mxgate promised a backend (or its spool) has the message. */
  accepted: number
  /** 4xx: the sender keeps the message and retries later. */
  tempFailed: number
  /** 5xx: the sender bounces the message. */
  rejected: number
  /** The connection failed or timed out before a final reply. */
  noReply: number
  notSent: number
  deliveredPerBackend: Map<string, number>
  /** Accepted (250) but at no backend: the one number that must be 0. */
  lost: number
  lostIds: string[]
  /** Message-IDs held more than once across all backends (same backend twice counts too). */
  duplicates: number
  duplicateIds: string[]
  /** At a backend although the sender did not get a 250: the sender's retry would make a duplicate. */
  deliveredUnacked: number
  /** Received by a backend but not sent by this demo (should be 0; probes carry no message). */
  strangers: number
}

function classify(o: SendOutcome): 'accepted' | 'tempFailed' | 'rejected' | 'noReply' {
  if (o.ok) return 'accepted'
  if (o.error !== undefined || o.code === null) return 'noReply'
  if (o.code >= 400 && o.code < 500) return 'tempFailed'
  if (o.code >= 500 && o.code < 600) return 'rejected'
  return 'noReply'
}

export function summarize(input: SummaryInput): Summary {
  const counts = { accepted: 0, tempFailed: 0, rejected: 0, noReply: 0 }
  let sent = 0
  const acceptedIds = new Set<string>()
  const ours = new Set(input.messageIds)
  for (let i = 0; i < input.requested; i++) {
    const o = input.outcomes[i]
    if (o === undefined) continue
    sent++
    const kind = classify(o)
    counts[kind]++
    const id = input.messageIds[i]
    if (kind === 'accepted' && id !== undefined) acceptedIds.add(id)
  }

  const copies = new Map<string, number>()
  const deliveredPerBackend = new Map<string, number>()
  let strangers = 0
  for (const [backend, ids] of input.received) {
    deliveredPerBackend.set(backend, ids.length)
    for (const id of ids) {
      if (id === null || !ours.has(id)) {
        strangers++
        continue
      }
      copies.set(id, (copies.get(id) ?? 0) + 1)
    }
  }

  const lostIds = [...acceptedIds].filter((id) => !copies.has(id))
  const duplicateIds = [...copies].filter(([, n]) => n > 1).map(([id]) => id)
  const deliveredUnacked = [...copies.keys()].filter((id) => !acceptedIds.has(id)).length
  return {
    requested: input.requested,
    sent,
    ...counts,
    notSent: input.requested - sent,
    deliveredPerBackend,
    lost: lostIds.length,
    lostIds,
    duplicates: duplicateIds.length,
    duplicateIds,
    deliveredUnacked,
    strangers,
  }
}

/** The last line of the demo; tests and the README rely on its exact shape. */
export function summaryLine(s: Summary): string {
  return `demo: sent ${s.sent}, accepted ${s.accepted}, lost ${s.lost}, duplicates ${s.duplicates}`
}

export interface BackendReportRow {
  id: string
  /** Attempts mxgate saw fail for this backend's fault (and so sent to another backend). */
  faultsSeen: number
  /** Its last state in mxgate's log ('admitted' when it never changed). */
  finalState: string
  /** Short note for the audience, e.g. "quiet failer: 451'd 12 of 240 messages, then fixed". */
  note: string
}

/** What mxgate's log said about how the accepted messages got there. */
export interface RelayCounts {
  /** Relayed after a backend failed the message and another took it. */
  rerouted: number
  /** Accepted into mxgate's spool (no backend took it inline) and delivered from there. */
  spooled: number
}

/** The summary table, one string per line, without trailing newlines. */
export function formatSummary(s: Summary, backends: readonly BackendReportRow[], relay: RelayCounts): string[] {
  const rows: [string, number, string][] = [
    ['sent', s.sent, ''],
    ['accepted (250)', s.accepted, 'a backend has it'],
    ['temp-failed (4xx)', s.tempFailed, 'the sender keeps it and retries'],
    ['rejected (5xx)', s.rejected, ''],
    ['no reply', s.noReply, 'connection failed or timed out'],
  ]
  if (s.notSent > 0) rows.push(['not sent', s.notSent, 'time limit reached or interrupted'])
  rows.push(['rerouted', relay.rerouted, 'a backend failed it, another took it'])
  rows.push(['spooled', relay.spooled, "no backend took it at once; mxgate's spool delivered it"])
  const width = Math.max(...rows.map(([, n]) => String(n).length), 5)
  const lines = ['summary:']
  for (const [label, n, note] of rows)
    lines.push(`  ${label.padEnd(18)} ${String(n).padStart(width)}  ${note}`.trimEnd())

  lines.push('  delivered per backend:')
  for (const b of backends) {
    const n = s.deliveredPerBackend.get(b.id) ?? 0
    const faults = b.faultsSeen > 0 ? `, ${b.faultsSeen} failed attempts` : ''
    const note = b.note === '' ? '' : `  (${b.note})`
    lines.push(`    ${b.id.padEnd(16)} ${String(n).padStart(width)}  ends ${b.finalState}${faults}${note}`)
  }
  lines.push(`  ${'lost'.padEnd(18)} ${String(s.lost).padStart(width)}  accepted but at no backend (must be 0)`)
  lines.push(`  ${'duplicates'.padEnd(18)} ${String(s.duplicates).padStart(width)}  same Message-ID held twice`)
  if (s.deliveredUnacked > 0) {
    lines.push(
      `  ${'delivered unacked'.padEnd(18)} ${String(s.deliveredUnacked).padStart(width)}  a retry would duplicate these`,
    )
  }
  if (s.strangers > 0)
    lines.push(`  ${'not ours'.padEnd(18)} ${String(s.strangers).padStart(width)}  messages the demo never sent`)
  for (const id of s.lostIds.slice(0, 5)) lines.push(`  lost: <${id}>`)
  for (const id of s.duplicateIds.slice(0, 5)) lines.push(`  duplicate: <${id}>`)
  return lines
}

/** The progress line: counts so far and the send rate. */
export function progressLine(done: number, total: number, accepted: number, failed: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? Math.round((done * 1000) / elapsedMs) : 0
  const pct = total > 0 ? Math.floor((100 * done) / total) : 100
  return `sending ${done}/${total} (${pct}%), accepted ${accepted}, not accepted ${failed}, ${rate} msg/s`
}
