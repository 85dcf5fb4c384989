// The on-disk spool file format, version 1: encode and decode, no I/O. docs/spool-format.md is the reference.
//
//   MXSPOOL 1 <headerLen> <bodyLen> <headerCrc32> <bodyCrc32>\n   preamble, ASCII, lengths decimal, CRCs 8 hex digits
//   <headerLen bytes of JSON: the SpoolEntry>\n
//   <bodyLen bytes: the message exactly as received, SMTP wire form>
//
// Envelope updates go to a sidecar with the same layout, magic MXSPENV and an empty body.
import { crc32 } from 'node:zlib'
import { SpoolCorruptError } from './errors'

export const FORMAT_VERSION = 1
export const MESSAGE_MAGIC = 'MXSPOOL'
export const ENVELOPE_MAGIC = 'MXSPENV'
/** The longest preamble a valid file can have; a reader that has this many bytes has the whole preamble. */
export const MAX_PREAMBLE = 96
/** Keep the last few delivery errors only: enough to explain a stuck message, bounded in size. */
export const MAX_LAST_ERRORS = 10

export interface LastError {
  backendId: string
  stage: string
  message: string
  at: number
}

export interface BouncedRecipient {
  rcpt: string
  /** The reply that made the recipient fail permanently, e.g. "550 5.1.1 no such user". */
  reply: string
}

/** The envelope of one spooled message. Entries handed out by the store are frozen: change them with update(). */
export interface SpoolEntry {
  version: 1
  id: string
  /** Reverse path without brackets; '' is the null sender. */
  from: string
  to: string[]
  /** Recipients not yet delivered (nor bounced). */
  pending: string[]
  done: string[]
  bounced: BouncedRecipient[]
  receivedAt: number
  attempts: number
  nextAttemptAt: number
  lastErrors: LastError[]
  trace: string
  held: boolean
  /** Body length in bytes. */
  size: number
  /** Backends never to deliver it to (a replay of what one of them took): absent on ordinary messages. */
  avoid?: string[]
}

export type FileKind = 'message' | 'envelope'

export interface Preamble {
  kind: FileKind
  version: number
  /** Bytes of the preamble line including its LF. */
  length: number
  headerLength: number
  bodyLength: number
  headerCrc: number
  bodyCrc: number
}

/** The head of a message file (preamble + header + LF); write it, then the body. */
export function encodeMessageHead(entry: SpoolEntry, body: Buffer): Buffer {
  if (entry.size !== body.length) throw new RangeError(`entry.size ${entry.size} != body length ${body.length}`)
  return encodeHead(MESSAGE_MAGIC, entry, body.length, crc32(body))
}

/** A whole envelope sidecar file. */
export function encodeEnvelope(entry: SpoolEntry): Buffer {
  return encodeHead(ENVELOPE_MAGIC, entry, 0, 0)
}

function encodeHead(magic: string, entry: SpoolEntry, bodyLength: number, bodyCrc: number): Buffer {
  const json = Buffer.from(JSON.stringify(entry), 'utf8')
  const pre = `${magic} ${FORMAT_VERSION} ${json.length} ${bodyLength} ${hex8(crc32(json))} ${hex8(bodyCrc)}\n`
  return Buffer.concat([Buffer.from(pre, 'latin1'), json, LF])
}

const LF = Buffer.from('\n')
const PREAMBLE_RE = /^(MXSPOOL|MXSPENV) (\d{1,4}) (\d{1,10}) (\d{1,16}) ([0-9a-f]{8}) ([0-9a-f]{8})$/

/**
 * Parse the preamble from the first bytes of a file. Returns null when `buf` is too short to hold the whole
 * preamble yet (read more); throws SpoolCorruptError when it cannot be a spool file.
 */
export function parsePreamble(buf: Buffer, file: string): Preamble | null {
  const nl = buf.indexOf(0x0a)
  if (nl < 0 || nl >= MAX_PREAMBLE) {
    if (nl < 0 && buf.length < MAX_PREAMBLE) return null
    throw new SpoolCorruptError(file, 'no preamble line')
  }
  const m = PREAMBLE_RE.exec(buf.subarray(0, nl).toString('latin1'))
  if (!m) throw new SpoolCorruptError(file, 'bad preamble')
  const version = Number(m[2])
  if (version !== FORMAT_VERSION) {
    throw new SpoolCorruptError(file, `format version ${version} is not supported (this build reads ${FORMAT_VERSION})`)
  }
  return {
    kind: m[1] === MESSAGE_MAGIC ? 'message' : 'envelope',
    version,
    length: nl + 1,
    headerLength: Number(m[3]),
    bodyLength: Number(m[4]),
    headerCrc: Number.parseInt(m[5] ?? '', 16),
    bodyCrc: Number.parseInt(m[6] ?? '', 16),
  }
}

/** Bytes from the start of the file to the first body byte. */
export function bodyOffset(pre: Preamble): number {
  return pre.length + pre.headerLength + 1
}

/** The file size a complete file with this preamble has. */
export function expectedFileSize(pre: Preamble): number {
  return bodyOffset(pre) + pre.bodyLength
}

/** Decode and validate the header; `buf` holds at least bodyOffset(pre) bytes from the start of the file. */
export function decodeHeader(buf: Buffer, pre: Preamble, file: string): SpoolEntry {
  const end = pre.length + pre.headerLength
  if (buf.length < end + 1) throw new SpoolCorruptError(file, 'header truncated')
  const json = buf.subarray(pre.length, end)
  if (crc32(json) !== pre.headerCrc) throw new SpoolCorruptError(file, 'header checksum mismatch')
  if (buf[end] !== 0x0a) throw new SpoolCorruptError(file, 'no LF after header')
  let parsed: unknown
  try {
    parsed = JSON.parse(json.toString('utf8'))
  } catch (err) {
    throw new SpoolCorruptError(file, `header is not JSON: ${(err as Error).message}`)
  }
  const entry = validateEntry(parsed, file)
  if (pre.kind === 'message' && entry.size !== pre.bodyLength) {
    throw new SpoolCorruptError(file, `header size ${entry.size} != preamble body length ${pre.bodyLength}`)
  }
  return entry
}

/** Decode a whole message file (header and body), checking both checksums. */
export function decodeMessageFile(buf: Buffer, file: string): { entry: SpoolEntry; body: Buffer } {
  const pre = parsePreamble(buf, file)
  if (!pre) throw new SpoolCorruptError(file, 'file shorter than its preamble')
  if (pre.kind !== 'message') throw new SpoolCorruptError(file, 'not a message file')
  if (buf.length !== expectedFileSize(pre)) {
    throw new SpoolCorruptError(file, `file is ${buf.length} bytes, preamble says ${expectedFileSize(pre)}`)
  }
  const entry = decodeHeader(buf, pre, file)
  const body = buf.subarray(bodyOffset(pre))
  if (crc32(body) !== pre.bodyCrc) throw new SpoolCorruptError(file, 'body checksum mismatch')
  return { entry, body }
}

/** Check every field's type, so a decoded entry can be trusted by the rest of the code. */
export function validateEntry(v: unknown, file: string): SpoolEntry {
  const bad = (field: string): never => {
    throw new SpoolCorruptError(file, `envelope field ${field} is missing or has the wrong type`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('(root)')
  const o = v as Record<string, unknown>
  if (o.version !== 1) {
    throw new SpoolCorruptError(file, `envelope version ${String(o.version)} is not supported (this build reads 1)`)
  }
  const str = (k: string): string => (typeof o[k] === 'string' ? (o[k] as string) : bad(k))
  const num = (k: string): number => (typeof o[k] === 'number' && Number.isFinite(o[k]) ? (o[k] as number) : bad(k))
  const strs = (k: string): string[] => {
    const a = o[k]
    return Array.isArray(a) && a.every((x) => typeof x === 'string') ? (a as string[]) : bad(k)
  }
  const list = <T>(k: string, ok: (x: Record<string, unknown>) => boolean): T[] => {
    const a = o[k]
    if (!Array.isArray(a)) return bad(k)
    for (const x of a) if (typeof x !== 'object' || x === null || !ok(x as Record<string, unknown>)) bad(k)
    return a as T[]
  }
  if (typeof o.held !== 'boolean') bad('held')
  const entry: SpoolEntry = {
    version: 1,
    id: str('id'),
    from: str('from'),
    to: strs('to'),
    pending: strs('pending'),
    done: strs('done'),
    bounced: list<BouncedRecipient>('bounced', (x) => typeof x.rcpt === 'string' && typeof x.reply === 'string'),
    receivedAt: num('receivedAt'),
    attempts: num('attempts'),
    nextAttemptAt: num('nextAttemptAt'),
    lastErrors: list<LastError>(
      'lastErrors',
      (x) =>
        typeof x.backendId === 'string' &&
        typeof x.stage === 'string' &&
        typeof x.message === 'string' &&
        typeof x.at === 'number',
    ),
    trace: str('trace'),
    held: o.held as boolean,
    size: num('size'),
  }
  if (o.avoid !== undefined) entry.avoid = strs('avoid')
  if (!/^[0-9a-z-]{1,64}$/.test(entry.id)) bad('id')
  return entry
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0')
}
