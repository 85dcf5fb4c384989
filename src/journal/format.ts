// The journal's record format, version 1: encode and decode, no I/O. README "The replay journal" describes it.
//
//   MXJNL 1 <headerLen> <bodyLen> <headerCrc32> <bodyCrc32>\n   preamble, ASCII, lengths decimal, CRCs 8 hex digits
//   <headerLen bytes of JSON: the JournalHeader>\n
//   <bodyLen bytes: the message exactly as relayed, SMTP wire form>
//
// Records follow each other in a segment file; the segment's index (one JSON line per record, with its offset) lets
// a reader find records without reading bodies, and a reader can always re-derive it from the preambles.
import { crc32 } from 'node:zlib'

export const JOURNAL_MAGIC = 'MXJNL'
export const JOURNAL_VERSION = 1
/** The longest preamble a valid record can have. */
export const MAX_PREAMBLE = 80

/** Which backend took which recipients of the message. */
export interface JournalDelivery {
  backend: string
  rcpts: string[]
}

/** What a record says about its message (the index line adds where the record is). */
export interface JournalHeader {
  v: 1
  /** When the last backend took it (epoch ms): the time replay windows select on. */
  at: number
  /** When the sender finished DATA. */
  receivedAt: number
  /** The message id inside mxgate (Haraka transaction uuid or spool id), for log correlation. */
  trace: string
  from: string
  deliveries: JournalDelivery[]
  /** The Message-ID header, if any (duplicates are recognised by it). */
  messageId: string | null
  /** Body bytes. */
  size: number
}

/** An index line: the header plus where its record lies in the segment. */
export interface IndexLine extends JournalHeader {
  /** Offset of the record's preamble in the segment file. */
  off: number
  /** Bytes of the whole record (preamble, header, body). */
  len: number
}

export class JournalCorruptError extends Error {
  readonly code = 'EJOURNALCORRUPT'
  constructor(
    readonly file: string,
    readonly offset: number,
    detail: string,
  ) {
    super(`journal segment ${file} at byte ${offset}: ${detail}`)
    this.name = 'JournalCorruptError'
  }
}

/** The whole record as buffers to write (head, body): no copy of the body. */
export function encodeRecord(h: JournalHeader, body: Buffer): [Buffer, Buffer] {
  const json = Buffer.from(JSON.stringify(h), 'utf8')
  const pre = `${JOURNAL_MAGIC} ${JOURNAL_VERSION} ${json.length} ${body.length} ${hex8(crc32(json))} ${hex8(crc32(body))}\n`
  return [Buffer.concat([Buffer.from(pre, 'latin1'), json, LF]), body]
}

export interface RecordFrame {
  /** Bytes of the preamble line including its LF. */
  preambleLength: number
  headerLength: number
  bodyLength: number
  headerCrc: number
  bodyCrc: number
}

const LF = Buffer.from('\n')
const PREAMBLE_RE = /^MXJNL (\d{1,4}) (\d{1,10}) (\d{1,16}) ([0-9a-f]{8}) ([0-9a-f]{8})$/

/** The frame from the first bytes of a record; null when `buf` holds too few bytes to tell. */
export function parseFrame(buf: Buffer, file: string, offset: number): RecordFrame | null {
  const nl = buf.indexOf(0x0a)
  if (nl < 0 || nl >= MAX_PREAMBLE) {
    if (nl < 0 && buf.length < MAX_PREAMBLE) return null
    throw new JournalCorruptError(file, offset, 'no record preamble')
  }
  const m = PREAMBLE_RE.exec(buf.subarray(0, nl).toString('latin1'))
  if (!m) throw new JournalCorruptError(file, offset, 'bad record preamble')
  if (Number(m[1]) !== JOURNAL_VERSION) {
    throw new JournalCorruptError(file, offset, `record version ${m[1]} is not supported (this build reads 1)`)
  }
  return {
    preambleLength: nl + 1,
    headerLength: Number(m[2]),
    bodyLength: Number(m[3]),
    headerCrc: Number.parseInt(m[4] ?? '', 16),
    bodyCrc: Number.parseInt(m[5] ?? '', 16),
  }
}

/** Bytes of the whole record with this frame. */
export function recordLength(f: RecordFrame): number {
  return f.preambleLength + f.headerLength + 1 + f.bodyLength
}

/** The header, from a buffer holding at least preamble + header + LF. */
export function decodeHeader(buf: Buffer, f: RecordFrame, file: string, offset: number): JournalHeader {
  const json = buf.subarray(f.preambleLength, f.preambleLength + f.headerLength)
  if (json.length !== f.headerLength) throw new JournalCorruptError(file, offset, 'header truncated')
  if (crc32(json) !== f.headerCrc) throw new JournalCorruptError(file, offset, 'header checksum mismatch')
  let h: unknown
  try {
    h = JSON.parse(json.toString('utf8'))
  } catch {
    throw new JournalCorruptError(file, offset, 'header is not JSON')
  }
  if (!isHeader(h)) throw new JournalCorruptError(file, offset, 'header fields are missing or of the wrong type')
  return h
}

/** The body of a whole record buffer, checked against its CRC. */
export function decodeBody(record: Buffer, f: RecordFrame, file: string, offset: number): Buffer {
  const body = record.subarray(f.preambleLength + f.headerLength + 1)
  if (body.length !== f.bodyLength) throw new JournalCorruptError(file, offset, 'body truncated')
  if (crc32(body) !== f.bodyCrc) throw new JournalCorruptError(file, offset, 'body checksum mismatch')
  return body
}

function isHeader(v: unknown): v is JournalHeader {
  if (typeof v !== 'object' || v === null) return false
  const o = v as Record<string, unknown>
  return (
    o.v === 1 &&
    typeof o.at === 'number' &&
    typeof o.receivedAt === 'number' &&
    typeof o.trace === 'string' &&
    typeof o.from === 'string' &&
    (o.messageId === null || typeof o.messageId === 'string') &&
    typeof o.size === 'number' &&
    Array.isArray(o.deliveries) &&
    o.deliveries.every(
      (d: unknown) =>
        typeof d === 'object' &&
        d !== null &&
        typeof (d as JournalDelivery).backend === 'string' &&
        Array.isArray((d as JournalDelivery).rcpts) &&
        (d as JournalDelivery).rcpts.every((r) => typeof r === 'string'),
    )
  )
}

const MESSAGE_ID_RE = /^message-id:[ \t]*(.*(?:\r\n[ \t].*)*)/im
/** Look for the header only in the header block, and only this far (a header block longer than this is unusual). */
const HEADER_SCAN = 64 * 1024
const HEADER_END = Buffer.from('\r\n\r\n')

/** The Message-ID of a wire-form message (without angle brackets' surrounding space), or null. */
export function messageIdOf(body: Buffer): string | null {
  // Find the end of the header block in the bytes first: only the header block becomes a string.
  const blank = body.indexOf(HEADER_END)
  const end = blank < 0 || blank > HEADER_SCAN ? Math.min(body.length, HEADER_SCAN) : blank
  const m = MESSAGE_ID_RE.exec(body.toString('latin1', 0, end))
  if (!m) return null
  const v = (m[1] ?? '').replace(/\r\n[ \t]+/g, ' ').trim()
  return v === '' ? null : v.slice(0, 998)
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0')
}
