// Authentication-Results a sender wrote in our name. Pure: no Haraka, no I/O.
//
// A backend (or the user's mail client) believes an Authentication-Results field whose authserv-id is ours: that is
// how it learns what mxgate's side checked. A sender can write one itself ("dkim=pass" for a forged From), so
// RFC 8601 §5 says the border MTA must remove or rename every such field that arrived from outside. mxgate renames
// it (the bytes stay for forensics; nobody trusts the new name) and touches nothing else.

const NAME = Buffer.from('authentication-results')
const RENAMED = Buffer.from('X-Mxgate-Forged-Authentication-Results:')

/** The authserv-id of an Authentication-Results value (RFC 8601 §2.2: CFWS, then the id, then `;` or CFWS). */
export function authservId(value: string): string {
  const v = value.replace(/\([^)]*\)/g, ' ').trimStart()
  const m = /^[^\s;]+/.exec(v)
  return m ? m[0].toLowerCase() : ''
}

/**
 * Where the value of an Authentication-Results field begins (just after its colon), or -1 for any other line. The
 * name is matched in any case and may be followed by spaces or tabs before the colon (RFC 5322 §4.5.3's obsolete
 * syntax, which readers still accept: a forgery must not slip through that way).
 */
function valueStart(line: Buffer): number {
  if (line.length <= NAME.length) return -1
  for (let i = 0; i < NAME.length; i++) {
    // ASCII letters only differ by 0x20 in case; '-' is compared exactly.
    const c = line[i]!
    const want = NAME[i]!
    if (c !== want && !(want >= 0x61 && want <= 0x7a && c === want - 0x20)) return -1
  }
  let i = NAME.length
  while (i < line.length && (line[i] === 0x20 || line[i] === 0x09)) i++
  return line[i] === 0x3a ? i + 1 : -1
}

/**
 * Renames, in place, every Authentication-Results field of the header section whose authserv-id is one of `ids`
 * (lower case). `lines` are the message's wire lines (CRLF kept), from `first` on (after lines mxgate added itself).
 * Returns how many fields were renamed.
 */
export function renameForgedAuthResults(lines: Buffer[], ids: readonly string[], first = 0): number {
  let renamed = 0
  for (let i = first; i < lines.length; i++) {
    const line = lines[i]!
    if (line.length <= 2 && (line[0] === 0x0d || line[0] === 0x0a)) break // the blank line ends the header section
    const start = valueStart(line)
    if (start < 0) continue
    // The value may go on over folded lines: the id could be on the next one.
    let value = line.subarray(start).toString('latin1')
    for (let j = i + 1; j < lines.length && (lines[j]![0] === 0x20 || lines[j]![0] === 0x09); j++) {
      value += lines[j]!.toString('latin1')
    }
    if (!ids.includes(authservId(value))) continue
    lines[i] = Buffer.concat([RENAMED, line.subarray(start)])
    renamed++
  }
  return renamed
}
