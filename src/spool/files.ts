// Spool files on disk: their names, reading them (header only, or whole), placing them durably, startup cleanup.
import { randomBytes } from 'node:crypto'
import fs, { promises as fsp } from 'node:fs'
import { uptime } from 'node:os'
import { join } from 'node:path'
import { type DirSyncer, type FaultHook, type FsTrace, HOST_TAG, pidAlive } from './disk'
import { SpoolCorruptError, SpoolWriteError } from './errors'
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
const FIRST_READ = 2048

// Header reads use synchronous syscalls: they are small (a few KiB), and at startup 50,000 of them through the
// thread pool cost four round trips each, ten times slower than doing them in place. Callers yield between batches.

/** Read and validate a message file's header without reading its body. */
export function readMessageHeader(dir: string, name: string): SpoolEntry {
  const file = join(dir, name)
  const fd = fs.openSync(file, 'r')
  try {
    const { size } = fs.fstatSync(fd)
    let buf = Buffer.allocUnsafe(Math.min(FIRST_READ, size))
    readFully(fd, buf, 0)
    const pre = parsePreamble(buf, file)
    if (!pre) throw new SpoolCorruptError(file, `file is ${size} bytes, shorter than its preamble`)
    if (pre.kind !== 'message') throw new SpoolCorruptError(file, 'an envelope file under a message name')
    if (size !== expectedFileSize(pre)) {
      throw new SpoolCorruptError(file, `file is ${size} bytes, preamble says ${expectedFileSize(pre)} (truncated?)`)
    }
    const need = bodyOffset(pre)
    if (buf.length < need) {
      const more = Buffer.allocUnsafe(need)
      buf.copy(more)
      readFully(fd, more, buf.length)
      buf = more
    }
    return checkId(decodeHeader(buf, pre, file), name, file)
  } finally {
    fs.closeSync(fd)
  }
}

/** Read and validate an envelope sidecar (small: header only). */
export function readEnvelope(dir: string, name: string): SpoolEntry {
  const file = join(dir, name)
  const buf = fs.readFileSync(file)
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

function readFully(fd: number, buf: Buffer, from: number): void {
  let off = from
  while (off < buf.length) {
    const bytesRead = fs.readSync(fd, buf, off, buf.length - off, off)
    if (bytesRead === 0) throw new Error(`unexpected end of file at ${off}`)
    off += bytesRead
  }
}

/**
 * Write every byte of `bufs` from offset 0: one writev (one thread-pool round trip for header and body), then
 * plain writes for whatever a short write left, so a disk that fills up mid-file surfaces as ENOSPC.
 */
export async function writeAll(fh: fsp.FileHandle, bufs: Buffer[]): Promise<void> {
  const total = bufs.reduce((n, b) => n + b.length, 0)
  let pos = (await fh.writev(bufs, 0)).bytesWritten
  while (pos < total) {
    const rest = Buffer.concat(bufs).subarray(pos)
    const { bytesWritten } = await fh.write(rest, 0, rest.length, pos)
    pos += bytesWritten
  }
}

export interface PlaceOptions {
  fsync: boolean
  fault?: FaultHook | undefined
  trace?: FsTrace | undefined
  dirSync: DirSyncer
  counter: { file: number }
}

/**
 * Write `bufs` to a temp file (O_EXCL), fsync it, rename it to `name`, fsync the directory (group commit).
 * On any failure nothing is left behind and a SpoolWriteError names the step.
 */
export async function placeDurably(dir: string, name: string, bufs: Buffer[], o: PlaceOptions): Promise<void> {
  const tmp = join(dir, tempName(randomBytes(6).toString('hex')))
  const final = join(dir, name)
  let fh: fsp.FileHandle | undefined
  let step = 'open'
  let placed = false
  try {
    await o.fault?.('open', tmp)
    fh = await fsp.open(tmp, 'wx', 0o640)
    step = 'write'
    await o.fault?.('write', tmp)
    await writeAll(fh, bufs)
    if (o.fsync) {
      // The directory fsync below persists the name only; without this the renamed file can come back empty.
      step = 'fsync'
      await o.fault?.('fsync', tmp)
      await fh.sync()
      o.counter.file++
    }
    step = 'close'
    await fh.close()
    fh = undefined
    step = 'rename'
    await o.fault?.('rename', tmp)
    await fsp.rename(tmp, final)
    placed = true
    o.trace?.('renamed', final)
    step = 'dirsync'
    await o.dirSync.sync()
  } catch (err) {
    await fh?.close().catch(() => undefined)
    // No half-written file stays; a renamed file whose directory fsync failed goes too, since the sender will
    // get a 4xx and send again.
    await fsp.unlink(placed ? final : tmp).catch(() => undefined)
    throw new SpoolWriteError(step, placed ? final : tmp, err)
  }
}

/**
 * Delete temp files whose writer is dead: written before the last boot, older than `maxAgeMs`, or from a pid
 * on this host that no longer exists. Their senders never got 250 (that comes only after the rename), so they
 * still have the message. Returns how many were deleted.
 */
export async function discardDeadTemps(dir: string, names: string[], maxAgeMs: number): Promise<number> {
  const bootAt = Date.now() - uptime() * 1000
  let discarded = 0
  for (const name of names) {
    const p = parseName(name)
    if (p.kind !== 'temp') continue
    const st = await fsp.stat(join(dir, name)).catch(() => null)
    if (!st) continue
    const writerDead =
      st.mtimeMs < bootAt ||
      Date.now() - st.mtimeMs > maxAgeMs ||
      (p.host === HOST_TAG && p.pid !== process.pid && !pidAlive(p.pid))
    if (!writerDead) continue
    await fsp.unlink(join(dir, name)).catch(() => undefined)
    discarded++
  }
  return discarded
}
