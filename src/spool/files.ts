// File names in the spool directory and reading spool files from disk (header only, or whole).
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import { HOST_TAG } from './disk'
import { SpoolCorruptError } from './errors'
import {
  bodyOffset,
  decodeHeader,
  decodeMessageFile,
  expectedFileSize,
  type Preamble,
  parsePreamble,
  type SpoolEntry,
} from './format'

// <id>.msg             a complete message (header + body), written once
// <id>.<seq>.env       a newer envelope for <id> (seq >= 1); the highest seq wins
// .tmp-<host>-<pid>-x  a file being written; never read, deleted at startup once its writer is dead
export const msgName = (id: string): string => `${id}.msg`
export const envName = (id: string, seq: number): string => `${id}.${seq}.env`
export const tempName = (tag: string): string => `.tmp-${HOST_TAG}-${process.pid}-${tag}`

export type ParsedName =
  | { kind: 'message'; id: string }
  | { kind: 'envelope'; id: string; seq: number }
  | { kind: 'temp'; host: string; pid: number }
  | { kind: 'other' }

const MSG_RE = /^([0-9a-z-]{1,64})\.msg$/
const ENV_RE = /^([0-9a-z-]{1,64})\.(\d{1,9})\.env$/
const TMP_RE = /^\.tmp-([0-9a-f]{8})-(\d+)-/

export function parseName(name: string): ParsedName {
  let m = MSG_RE.exec(name)
  if (m?.[1]) return { kind: 'message', id: m[1] }
  m = ENV_RE.exec(name)
  if (m?.[1] && m[2]) return { kind: 'envelope', id: m[1], seq: Number(m[2]) }
  m = TMP_RE.exec(name)
  if (m?.[1] && m[2]) return { kind: 'temp', host: m[1], pid: Number(m[2]) }
  return { kind: 'other' }
}

/** The first read of a header; most envelopes fit, larger ones cost one more read. */
const FIRST_READ = 4096

/** Read and validate a message file's header without reading its body. */
export async function readMessageHeader(dir: string, name: string): Promise<SpoolEntry> {
  const file = join(dir, name)
  const fh = await fsp.open(file, 'r')
  try {
    const { size } = await fh.stat()
    let buf = Buffer.alloc(Math.min(FIRST_READ, size))
    await readFully(fh, buf, 0)
    const pre = parsePreamble(buf, file)
    if (!pre) throw new SpoolCorruptError(file, `file is ${size} bytes, shorter than its preamble`)
    if (pre.kind !== 'message') throw new SpoolCorruptError(file, 'an envelope file under a message name')
    if (size !== expectedFileSize(pre)) {
      throw new SpoolCorruptError(file, `file is ${size} bytes, preamble says ${expectedFileSize(pre)} (truncated?)`)
    }
    const need = bodyOffset(pre)
    if (buf.length < need) {
      const more = Buffer.alloc(need)
      buf.copy(more)
      await readFully(fh, more, buf.length)
      buf = more
    }
    return checkId(decodeHeader(buf, pre, file), name, file)
  } finally {
    await fh.close()
  }
}

/** Read and validate an envelope sidecar. */
export async function readEnvelope(dir: string, name: string): Promise<SpoolEntry> {
  const file = join(dir, name)
  const buf = await fsp.readFile(file)
  const pre: Preamble | null = parsePreamble(buf, file)
  if (!pre) throw new SpoolCorruptError(file, 'file shorter than its preamble')
  if (pre.kind !== 'envelope') throw new SpoolCorruptError(file, 'a message file under an envelope name')
  if (buf.length !== expectedFileSize(pre)) throw new SpoolCorruptError(file, 'file length does not match preamble')
  return checkId(decodeHeader(buf, pre, file), name, file)
}

/** Read a whole message file and return its body, checksum verified. */
export async function readMessageBody(dir: string, id: string): Promise<Buffer> {
  const file = join(dir, msgName(id))
  const { entry, body } = decodeMessageFile(await fsp.readFile(file), file)
  checkId(entry, msgName(id), file)
  return body
}

function checkId(entry: SpoolEntry, name: string, file: string): SpoolEntry {
  if (!name.startsWith(`${entry.id}.`)) throw new SpoolCorruptError(file, `header id ${entry.id} does not match name`)
  return entry
}

async function readFully(fh: fsp.FileHandle, buf: Buffer, from: number): Promise<void> {
  let off = from
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, off)
    if (bytesRead === 0) throw new Error(`unexpected end of file at ${off}`)
    off += bytesRead
  }
}

/** Write every byte of `bufs` (a short write from a nearly full disk is retried, so ENOSPC surfaces as an error). */
export async function writeAll(fh: fsp.FileHandle, bufs: Buffer[]): Promise<void> {
  let pos = 0
  for (const buf of bufs) {
    let off = 0
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos)
      off += bytesWritten
      pos += bytesWritten
    }
  }
}
