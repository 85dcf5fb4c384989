// `mxgate spool show`: one spooled message as text. Every value from the node goes through safeText.
import type { SpoolItemView } from '../admin/types'
import { formatAgo, formatBytes, formatIn } from './duration'
import { safeText } from './terminal-text'

export type SpoolDetail = SpoolItemView & {
  lastErrors: { backendId: string; stage: string; message: string; at: number }[]
}

/** `mxgate spool show`: every text from the node (addresses, replies, ids) goes through safeText. */
export function spoolDetail(node: string | null, m: SpoolDetail, now: number): string {
  const s = safeText
  const when = (at: number) => `${new Date(at).toISOString()} (${formatAgo(at, now)})`
  const pending = m.pending.length === m.to.length ? '' : ` (pending: ${s(m.pending.join(', ')) || 'none'})`
  const lines = [
    `message ${s(m.id)}${node ? ` on node ${s(node)}` : ''}`,
    `  from       ${m.from === '' ? '<>' : s(m.from)}`,
    `  to         ${s(m.to.join(', '))}${pending}`,
    `  received   ${when(m.receivedAt)}`,
    `  size       ${formatBytes(m.size)}`,
    `  attempts   ${m.attempts}`,
    `  next       ${m.held ? 'held (mxgate spool release to resume)' : `${formatIn(m.nextAttemptAt, now)} (${new Date(m.nextAttemptAt).toISOString()})`}`,
    `  last error ${m.lastError === null ? '-' : s(m.lastError)}`,
  ]
  if (m.lastErrors.length > 0) {
    lines.push('  errors')
    for (const e of m.lastErrors)
      lines.push(`    ${new Date(e.at).toISOString()}  ${s(e.backendId)} at ${s(e.stage)}: ${s(e.message)}`)
  }
  return `${lines.join('\n')}\n`
}
