// Finds journal entries by backend and time window through the segment indexes (bodies are read only for the
// entries replay sends), and knows which entries were already replayed for which backend.
import { promises as fsp } from 'node:fs'
import { decodeBody, type IndexLine, JournalCorruptError, parseFrame } from './format'
import { listSegments, readIndex, type Segment } from './segments'

export interface JournalQuery {
  backend: string
  /** Epoch ms, inclusive. */
  since: number
  /** Epoch ms, exclusive. */
  until: number
}

/** One message a backend took in the window, with the recipients it took. */
export interface FoundEntry {
  /** `<segment>:<offset>`: stable while the segment is kept. */
  id: string
  segment: Segment
  line: IndexLine
  rcpts: string[]
  /** Already put back into the spool for this backend by an earlier replay. */
  replayed: boolean
}

/** A record's `at` may precede its segment's start by up to one batch: look this far into the segment before. */
const SEGMENT_LAG_MS = 60_000

export class JournalReader {
  constructor(readonly dir: string) {}

  /** Entries `q.backend` took in [since, until), oldest first. */
  async find(q: JournalQuery): Promise<FoundEntry[]> {
    const out: FoundEntry[] = []
    for (const seg of await listSegments(this.dir)) {
      // Written entirely before the window, or begun after it: no record of it can be in the window.
      if (seg.mtimeMs < q.since || seg.startMs - SEGMENT_LAG_MS >= q.until) continue
      let lines: IndexLine[]
      try {
        lines = await readIndex(seg)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // removed by retention meanwhile
        throw err
      }
      const marks = await readMarks(seg)
      for (const line of lines) {
        if (line.at < q.since || line.at >= q.until) continue
        const rcpts = line.deliveries.filter((d) => d.backend === q.backend).flatMap((d) => d.rcpts)
        if (rcpts.length === 0) continue
        out.push({
          id: `${seg.base}:${line.off}`,
          segment: seg,
          line,
          rcpts,
          replayed: marks.has(markOf(q.backend, line.off)),
        })
      }
    }
    return out.sort((a, b) => a.line.at - b.line.at)
  }

  /** The message body of an entry, checked against its checksum. */
  async body(e: FoundEntry): Promise<Buffer> {
    const fh = await fsp.open(e.segment.data, 'r')
    try {
      const buf = Buffer.alloc(e.line.len)
      const { bytesRead } = await fh.read(buf, 0, buf.length, e.line.off)
      if (bytesRead !== buf.length) throw new JournalCorruptError(e.segment.data, e.line.off, 'record truncated')
      const frame = parseFrame(buf, e.segment.data, e.line.off)
      if (frame === null) throw new JournalCorruptError(e.segment.data, e.line.off, 'record truncated')
      return decodeBody(buf, frame, e.segment.data, e.line.off)
    } finally {
      await fh.close()
    }
  }
}

export function markOf(backend: string, off: number): string {
  return `${backend} ${off}`
}

async function readMarks(seg: Segment): Promise<Set<string>> {
  try {
    const text = await fsp.readFile(seg.marks, 'utf8')
    return new Set(text.split('\n').filter((l) => l !== ''))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set()
    throw err
  }
}
