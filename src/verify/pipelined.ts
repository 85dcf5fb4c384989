// The recipients of RCPT commands a client pipelined behind the one being answered (RFC 2920): their checks can
// start now, alongside it, instead of one after another. Pure; a line it cannot read is left to the normal path.

/** At most this many lines are looked at per call (a client pipelines one transaction's worth). */
const MAX_LINES = 1000
const RCPT = /^RCPT TO:\s*<([^<>"\s]+)>/i

/** Addresses (`user@domain`, as written) of the RCPT commands in `buffered`, in order; source routes skipped. */
export function pipelinedRecipients(buffered: Buffer | null | undefined): string[] {
  if (buffered == null || buffered.length === 0) return []
  const out: string[] = []
  const lines = buffered.toString('latin1').split('\n', MAX_LINES)
  // The last piece has no LF yet: an incomplete command.
  for (const line of lines.slice(0, -1)) {
    const m = RCPT.exec(line)
    const address = m?.[1]
    if (address === undefined || address.startsWith('@') || !address.includes('@')) continue
    out.push(address)
  }
  return out
}
