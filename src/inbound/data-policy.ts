// Bytes mxgate refuses inside DATA. Pure: no Haraka, no I/O.
//
// Only <CRLF>.<CRLF> ends DATA here, but a backend that treats a bare CR as a line end (or stops at a NUL) would see
// a different message boundary than mxgate did: the bytes after it become a second, smuggled message from whoever
// wrote them. A bare LF is found by Haraka itself (tuning.ts gives its refusal this reply). RFC 5321 §2.3.8 allows CR
// and LF only together.

export type DataFault = 'NUL' | 'bare CR' | 'bare LF'

/** What is wrong with one DATA line as Haraka's line splitter hands it over (ending in LF), or null. */
export function dataLineFault(line: Buffer): DataFault | null {
  if (line.indexOf(0) !== -1) return 'NUL'
  const cr = line.indexOf(13)
  // The one CR allowed is the one right before the final LF.
  if (cr !== -1 && (cr !== line.length - 2 || line[line.length - 1] !== 10)) return 'bare CR'
  return null
}

/** The reply for a message that carried such a byte: permanent, since sending it again will not help. */
export function dataFaultReply(fault: DataFault): { code: number; enhanced: string; text: string } {
  const what =
    fault === 'NUL'
      ? 'a NUL byte'
      : fault === 'bare CR'
        ? 'a bare CR (one not followed by LF)'
        : 'a bare LF (one not preceded by CR)'
  return {
    code: 554,
    enhanced: '5.6.0',
    text: `Message refused: it contains ${what}; lines must end in CRLF and carry no NUL (RFC 5321 2.3.8)`,
  }
}
