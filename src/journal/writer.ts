// Appends every relayed message to the journal, off the sender's reply path: record() only queues; a batch is
// written (one write, one fsync) after journal.batch or once enough bytes wait. The message is already durable at
// its backend, so the journal may lag by one batch. A write error or a full disk degrades the journal (logged once,
// counted) and never reaches the mail path: record() cannot throw and never waits.
import { promises as fsp } from 'node:fs'
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { encodeRecord, type IndexLine, type JournalHeader, messageIdOf } from './format'
import { byteLimit, eatsReserve, type RetentionLimits, segmentsToRemove } from './retention'
import { listSegments, newSegmentBase, segmentPaths } from './segments'

export interface JournalSettings {
  enabled: boolean
  dir: string
  retentionMs: number
  maxBytes: number
  diskShare: number
  batchMs: number
  /** Follows spool.fsync: off only for tests and benchmarks. */
  fsync: boolean
  /**
   * The spool's min_free_disk and directory: on the spool's filesystem, the journal keeps twice this free
   * (retention.ts); on a disk of its own, nothing is reserved.
   */
  reserveBytes?: number
  reserveDir?: string
}

export interface JournalWriterOptions extends JournalSettings {
  /** Start a new segment past this many bytes (default 64 MiB) or this age (default 1 h). */
  segmentBytes?: number
  segmentMs?: number
  /** Write at once, without waiting for batchMs, when this many body bytes wait (default 4 MiB). */
  batchBytes?: number
  /** Beyond this many waiting body bytes (a disk slower than the mail), new entries are dropped (default 64 MiB). */
  maxBufferedBytes?: number
  /** How often retention looks at the directory (default 1 min); it also runs at every new segment. */
  pruneEveryMs?: number
}

export interface JournalStats {
  enabled: boolean
  /** Bytes of every segment in the directory (all processes), as of the last look plus what this one wrote since. */
  bytes: number
  /** Start of the oldest segment: no kept entry is older. Null when empty. */
  oldestAt: number | null
  written: number
  writeErrors: number
  /** Entries never journaled: their batch failed to write, or the buffer was full. */
  dropped: number
  /** Why the journal is not writing now, or null. */
  degraded: string | null
}

/** The part of a delivery the journal keeps: who took which recipients. */
export interface DeliveredTo {
  backendId: string
  recipients: readonly string[]
}

interface Pending {
  msg: InboundMessage
  deliveries: { backend: string; rcpts: string[] }[]
  at: number
}

interface OpenSegment {
  base: string
  startMs: number
  data: fsp.FileHandle
  index: fsp.FileHandle
  size: number
}

const MIB = 1024 ** 2

export class JournalWriter {
  private pending: Pending[] = []
  private pendingBytes = 0
  private timer: NodeJS.Timeout | null = null
  private pruneTimer: NodeJS.Timeout | null = null
  private writing: Promise<void> | null = null
  private segment: OpenSegment | null = null
  private closed = false
  private pruning: Promise<void> | null = null
  private readonly counts = { written: 0, writeErrors: 0, dropped: 0 }
  private degraded: string | null = null
  private bytes = 0
  private oldestAt: number | null = null
  private readonly segmentBytes: number
  private readonly segmentMs: number
  private readonly batchBytes: number
  private readonly maxBufferedBytes: number
  /** The spool's reserve when the journal shares its filesystem (settled at open), else 0. */
  private reserve: number

  constructor(
    private readonly opts: JournalWriterOptions,
    private readonly log: Logger,
  ) {
    this.segmentBytes = opts.segmentBytes ?? 64 * MIB
    this.segmentMs = opts.segmentMs ?? 3_600_000
    this.batchBytes = opts.batchBytes ?? 4 * MIB
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 64 * MIB
    this.reserve = opts.reserveBytes ?? 0
  }

  get dir(): string {
    return this.opts.dir
  }

  /** Creates the directory and reads what is there; a failure degrades the journal, it does not stop the node. */
  async open(): Promise<void> {
    if (!this.opts.enabled) return
    try {
      await fsp.mkdir(this.opts.dir, { recursive: true })
      if (this.opts.reserveDir !== undefined) {
        // Unknown (the spool dir unreadable): keep the reserve, the safe side for the spool.
        const spool = await fsp.stat(this.opts.reserveDir).catch(() => null)
        if (spool !== null && (await fsp.stat(this.opts.dir)).dev !== spool.dev) this.reserve = 0
      }
      await this.prune()
    } catch (err) {
      this.fail(err, 0)
    }
    this.pruneTimer = setInterval(() => void this.pruneNow(), this.opts.pruneEveryMs ?? 60_000)
    this.pruneTimer.unref()
  }

  /** A backend took `msg` for these recipients and its sender has its answer: queue it. Never throws, never waits. */
  delivered(msg: InboundMessage, deliveries: readonly DeliveredTo[], at = Date.now()): void {
    if (!this.opts.enabled || this.closed || deliveries.length === 0) return
    if (this.pendingBytes + msg.body.length > this.maxBufferedBytes) {
      this.counts.dropped++
      this.degrade(`more than ${this.maxBufferedBytes} bytes wait to be written: the journal disk is too slow`)
      return
    }
    this.pending.push({
      msg,
      deliveries: deliveries.map((d) => ({ backend: d.backendId, rcpts: [...d.recipients] })),
      at,
    })
    this.pendingBytes += msg.body.length
    if (this.pendingBytes >= this.batchBytes) setImmediate(() => void this.flush())
    else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null
        void this.flush()
      }, this.opts.batchMs)
      this.timer.unref()
    }
  }

  /** Writes everything queued so far; resolves when it is written (or failed). */
  flush(): Promise<void> {
    if (this.writing) return this.writing.then(() => (this.pending.length > 0 ? this.flush() : undefined))
    if (this.pending.length === 0) return Promise.resolve()
    this.writing = (async () => {
      while (this.pending.length > 0) {
        const batch = this.pending
        this.pending = []
        this.pendingBytes = 0
        await this.write(batch)
      }
    })().finally(() => {
      this.writing = null
    })
    return this.writing
  }

  stats(): JournalStats {
    return {
      enabled: this.opts.enabled,
      bytes: this.bytes,
      oldestAt: this.oldestAt,
      ...this.counts,
      degraded: this.degraded,
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    if (this.timer) clearTimeout(this.timer)
    if (this.pruneTimer) clearInterval(this.pruneTimer)
    await this.flush()
    this.closed = true
    await this.pruning
    await this.closeSegment()
  }

  private async write(batch: Pending[]): Promise<void> {
    try {
      const bytes = batch.reduce((n, p) => n + p.msg.body.length, 0)
      if (this.reserve > 0 && eatsReserve(this.limits(), await this.freeBytes(), bytes)) {
        // Make room from the oldest entries first; what still does not fit is not journaled (the mail is delivered).
        await this.prune(Date.now(), true)
        if (eatsReserve(this.limits(), await this.freeBytes(), bytes)) {
          this.counts.dropped += batch.length
          this.degrade(
            `the journal's disk is down to twice the spool's min_free_disk (${this.reserve} bytes): the spool's margin comes first`,
          )
          return
        }
      }
      const seg = await this.segmentFor(batch[0]!.at)
      const buffers: Buffer[] = []
      const lines: string[] = []
      let off = seg.size
      for (const p of batch) {
        const h: JournalHeader = {
          v: 1,
          at: p.at,
          receivedAt: p.msg.receivedAt,
          trace: p.msg.id,
          from: p.msg.envelope.from,
          deliveries: p.deliveries,
          messageId: messageIdOf(p.msg.body),
          size: p.msg.body.length,
        }
        const [head, body] = encodeRecord(h, p.msg.body)
        const len = head.length + body.length
        buffers.push(head, body)
        const line: IndexLine = { ...h, off, len }
        lines.push(JSON.stringify(line))
        off += len
      }
      const dataBytes = off - seg.size
      await writeAll(seg.data, buffers, dataBytes)
      if (this.opts.fsync) await seg.data.datasync()
      seg.size = off
      // After the records are on disk: an index line never points at a record that is not (readIndex re-derives
      // lines a crash kept from being appended).
      await seg.index.write(`${lines.join('\n')}\n`)
      this.bytes += dataBytes + lines.reduce((n, l) => n + l.length + 1, 0)
      this.oldestAt ??= seg.startMs
      this.counts.written += batch.length
      if (this.degraded !== null) {
        this.log.warn({ was: this.degraded, dir: this.opts.dir }, 'journal writes again')
        this.degraded = null
      }
    } catch (err) {
      this.fail(err, batch.length)
      // The segment may end in a torn record now: start a new one (readers stop at the torn record). One that holds
      // no record goes, so a long outage does not leave an empty segment per batch behind.
      const seg = this.segment
      await this.closeSegment().catch(() => undefined)
      if (seg !== null && seg.size === 0) {
        const p = segmentPaths(this.opts.dir, seg.base)
        await fsp.rm(p.data, { force: true }).catch(() => undefined)
        await fsp.rm(p.index, { force: true }).catch(() => undefined)
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') void this.pruneNow()
    }
  }

  private fail(err: unknown, entries: number): void {
    this.counts.writeErrors++
    this.counts.dropped += entries
    const e = err as NodeJS.ErrnoException
    this.degrade(`${e.code ?? 'error'}: ${e.message ?? String(err)}`, err)
  }

  /** Says once per episode that the journal is not keeping mail (the mail itself flows on). */
  private degrade(why: string, err?: unknown): void {
    if (this.degraded === null) {
      this.log.error(
        { err, dir: this.opts.dir },
        `journal degraded, messages are relayed but not journaled (replay cannot send them again): ${why}`,
      )
    }
    this.degraded = why
  }

  private async segmentFor(at: number): Promise<OpenSegment> {
    const cur = this.segment
    if (cur && cur.size < this.segmentBytes && at - cur.startMs < this.segmentMs) return cur
    await this.closeSegment()
    const startMs = Date.now()
    const base = newSegmentBase(startMs)
    const paths = segmentPaths(this.opts.dir, base)
    await fsp.mkdir(this.opts.dir, { recursive: true })
    const data = await fsp.open(paths.data, 'ax')
    let index: fsp.FileHandle
    try {
      index = await fsp.open(paths.index, 'a')
    } catch (err) {
      await data.close()
      throw err
    }
    if (this.opts.fsync) await syncDir(this.opts.dir)
    this.segment = { base, startMs, data, index, size: 0 }
    // A new segment is the moment to look at retention (and to refresh the size and age figures).
    void this.pruneNow()
    return this.segment
  }

  private async closeSegment(): Promise<void> {
    const seg = this.segment
    this.segment = null
    if (!seg) return
    await Promise.allSettled([seg.data.close(), seg.index.close()])
  }

  private pruneNow(): Promise<void> {
    this.pruning ??= this.prune()
      .catch((err: unknown) => this.log.warn({ err, dir: this.opts.dir }, 'journal retention failed'))
      .finally(() => {
        this.pruning = null
      })
    return this.pruning
  }

  private limits(): RetentionLimits {
    return {
      maxAgeMs: this.opts.retentionMs,
      maxBytes: this.opts.maxBytes,
      diskShare: this.opts.diskShare,
      reserveBytes: this.reserve,
    }
  }

  private async freeBytes(): Promise<number> {
    try {
      const st = await fsp.statfs(this.opts.dir)
      return st.bavail * st.bsize
    } catch {
      return Number.POSITIVE_INFINITY // no statfs here: only max_size applies
    }
  }

  /**
   * Removes the oldest segments past the retention time or the size limit; refreshes the size and age figures.
   * `fromWrite`: called by the writer itself, between batches, so the segment being written may be closed and go too
   * when even that is over the limit (only the spool's reserve makes a limit that small).
   */
  async prune(now = Date.now(), fromWrite = false): Promise<void> {
    const segs = await listSegments(this.opts.dir)
    const total = segs.reduce((n, s) => n + s.bytes, 0)
    const limit = byteLimit(this.limits(), total, await this.freeBytes())
    const current = this.segment
    if (fromWrite && current !== null && current.size > 0 && current.size > limit) await this.closeSegment()
    const keep = new Set(this.segment ? [this.segment.base] : [])
    const gone = new Set(segmentsToRemove(segs, this.opts.retentionMs, limit, now, keep))
    for (const base of gone) {
      const p = segmentPaths(this.opts.dir, base)
      // Data first: a segment without data is no segment, whatever is left of its index or marks.
      await fsp.rm(p.data, { force: true })
      await fsp.rm(p.index, { force: true })
      await fsp.rm(p.marks, { force: true })
    }
    if (gone.size > 0) this.log.info({ removed: [...gone], limitBytes: limit }, 'journal retention removed segments')
    const left = segs.filter((s) => !gone.has(s.base))
    this.bytes = left.reduce((n, s) => n + s.bytes, 0)
    this.oldestAt = left[0]?.startMs ?? null
  }
}

/** Writes every byte of `buffers` (a short write is finished, not ignored). */
async function writeAll(fh: fsp.FileHandle, buffers: Buffer[], total: number): Promise<void> {
  const first = (await fh.writev(buffers)).bytesWritten
  if (first === total) return
  let rest = Buffer.concat(buffers).subarray(first)
  while (rest.length > 0) {
    const { bytesWritten } = await fh.write(rest)
    if (bytesWritten === 0) throw new Error('journal write made no progress')
    rest = rest.subarray(bytesWritten)
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
