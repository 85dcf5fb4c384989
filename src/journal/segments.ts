// The journal directory: segment files, their indexes and replay marks, by name; listing and reading indexes.
//
//   <dir>/<startMs>-<pid>-<rand>.jnl       records, appended by one process, never rewritten
//   <dir>/<startMs>-<pid>-<rand>.idx       one JSON line per record (IndexLine), appended after the records' fsync
//   <dir>/<startMs>-<pid>-<rand>.replayed  "<backend> <offset>" per record replayed for that backend
//
// startMs is 13 digits, so names sort by age. Each process writes its own segments (Haraka workers share the dir).
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { decodeHeader, type IndexLine, JournalCorruptError, MAX_PREAMBLE, parseFrame, recordLength } from './format'

export interface Segment {
  base: string
  startMs: number
  data: string
  index: string
  marks: string
  /** Bytes of the data file, its index and marks. */
  bytes: number
  /** Bytes of the data file alone. */
  dataBytes: number
  /** Last write to the data file: no record in it is newer. */
  mtimeMs: number
}

const NAME_RE = /^(\d{13})-(\d+)-([0-9a-f]{8})\.jnl$/

export function newSegmentBase(startMs: number): string {
  return `${String(startMs).padStart(13, '0')}-${process.pid}-${randomBytes(4).toString('hex')}`
}

export function segmentPaths(dir: string, base: string): Pick<Segment, 'data' | 'index' | 'marks'> {
  return {
    data: path.join(dir, `${base}.jnl`),
    index: path.join(dir, `${base}.idx`),
    marks: path.join(dir, `${base}.replayed`),
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size
  } catch {
    return 0
  }
}

/** Every segment in `dir`, oldest first; [] when the directory does not exist (yet). */
export async function listSegments(dir: string): Promise<Segment[]> {
  let names: string[]
  try {
    names = await fsp.readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: Segment[] = []
  for (const name of names) {
    const m = NAME_RE.exec(name)
    if (!m) continue
    const base = name.slice(0, -'.jnl'.length)
    const paths = segmentPaths(dir, base)
    let st: import('node:fs').Stats
    try {
      st = await fsp.stat(paths.data)
    } catch {
      continue // removed by retention meanwhile
    }
    const extra = (await sizeOf(paths.index)) + (await sizeOf(paths.marks))
    out.push({
      base,
      startMs: Number(m[1]),
      ...paths,
      bytes: st.size + extra,
      dataBytes: st.size,
      mtimeMs: st.mtimeMs,
    })
  }
  return out.sort((a, b) => a.startMs - b.startMs || (a.base < b.base ? -1 : 1))
}

/**
 * The segment's records as index lines. The index file may lag the data (a crash between the records' fsync and the
 * index append): the records past its end are read from their preambles and headers, never their bodies. A torn
 * record at the very end (a crash or a full disk mid-write) is left out.
 */
export async function readIndex(seg: Segment): Promise<IndexLine[]> {
  const lines: IndexLine[] = []
  let text = ''
  try {
    text = await fsp.readFile(seg.index, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  let end = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    let parsed: IndexLine
    try {
      parsed = JSON.parse(line) as IndexLine
    } catch {
      break // a torn last line: the tail scan below covers its record
    }
    if (parsed.off !== end) break // not where the previous record ended: trust the data file from here on
    lines.push(parsed)
    end = parsed.off + parsed.len
  }
  if (end < seg.dataBytes) lines.push(...(await scanTail(seg, end)))
  return lines
}

/** Index lines for the records from `offset` on, read from the data file's preambles and headers. */
async function scanTail(seg: Segment, offset: number): Promise<IndexLine[]> {
  const out: IndexLine[] = []
  const fh = await fsp.open(seg.data, 'r')
  try {
    const size = (await fh.stat()).size
    let off = offset
    while (off < size) {
      const pre = Buffer.alloc(Math.min(MAX_PREAMBLE, size - off))
      await fh.read(pre, 0, pre.length, off)
      let frame: ReturnType<typeof parseFrame>
      try {
        frame = parseFrame(pre, seg.data, off)
      } catch (err) {
        if (err instanceof JournalCorruptError) break
        throw err
      }
      if (frame === null) break
      const len = recordLength(frame)
      if (off + len > size) break // torn
      const head = Buffer.alloc(frame.preambleLength + frame.headerLength + 1)
      await fh.read(head, 0, head.length, off)
      try {
        out.push({ ...decodeHeader(head, frame, seg.data, off), off, len })
      } catch (err) {
        if (err instanceof JournalCorruptError) break
        throw err
      }
      off += len
    }
  } finally {
    await fh.close()
  }
  return out
}
