// Replay: every message a backend took in a window goes back into the spool, for any backend but that one. Each
// entry is marked once it is durable in the spool, so a second replay of the same window sends nothing twice
// (unless `again`); a crash between the spool write and the mark means one duplicate, never a loss.
import { promises as fsp } from 'node:fs'
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { type FoundEntry, type JournalReader, markOf } from './reader'

/** The spool's write, as replay needs it (SpoolStore fills it). */
export interface ReplaySpool {
  write(
    msg: InboundMessage,
    meta: { pending: string[]; avoid: string[]; trace: string; nextAttemptAt: number },
  ): Promise<unknown>
}

export interface ReplayRequest {
  backend: string
  since: number
  until: number
  dryRun: boolean
  /** Send entries again that an earlier replay already sent. */
  again: boolean
}

export interface ReplayResult {
  backend: string
  since: number
  until: number
  dryRun: boolean
  /** Messages put back into the spool (or that would be, in a dry run), and their body bytes. */
  messages: number
  bytes: number
  /** Entries left out because an earlier replay sent them (see `again`). */
  skipped: number
  /** Why replay stopped early (the spool refused a message); replaying the window again sends the rest. */
  error: string | null
}

export async function replay(
  reader: JournalReader,
  spool: ReplaySpool,
  req: ReplayRequest,
  log: Logger,
  fsync = true,
): Promise<ReplayResult> {
  const found = await reader.find(req)
  const result: ReplayResult = { ...req, messages: 0, bytes: 0, skipped: 0, error: null }
  const marks = new Marks(fsync)
  try {
    for (const e of found) {
      if (e.replayed && !req.again) {
        result.skipped++
        continue
      }
      if (!req.dryRun) {
        try {
          await put(reader, spool, e, req.backend)
        } catch (err) {
          result.error = `${(err as Error).message} (after ${result.messages} messages; replay the window again to send the rest)`
          log.error({ err, entry: e.id, backend: req.backend }, 'replay stopped: the spool refused a message')
          break
        }
        await marks.add(e, req.backend)
      }
      result.messages++
      result.bytes += e.line.size
    }
  } finally {
    await marks.close()
  }
  return result
}

async function put(reader: JournalReader, spool: ReplaySpool, e: FoundEntry, backend: string): Promise<void> {
  const body = await reader.body(e)
  await spool.write(
    { id: e.id, envelope: { from: e.line.from, to: e.rcpts }, body, receivedAt: Date.now() },
    { pending: e.rcpts, avoid: [backend], trace: `replay ${e.id} (${e.line.trace})`, nextAttemptAt: Date.now() },
  )
}

/** Appends replay marks per segment; fsynced when the segment's run ends. */
class Marks {
  private file: string | null = null
  private fh: fsp.FileHandle | null = null

  constructor(private readonly fsync: boolean) {}

  async add(e: FoundEntry, backend: string): Promise<void> {
    if (this.file !== e.segment.marks) {
      await this.close()
      this.fh = await fsp.open(e.segment.marks, 'a')
      this.file = e.segment.marks
    }
    await this.fh!.write(`${markOf(backend, e.line.off)}\n`)
  }

  async close(): Promise<void> {
    const fh = this.fh
    this.fh = null
    this.file = null
    if (!fh) return
    try {
      if (this.fsync) await fh.datasync()
    } finally {
      await fh.close()
    }
  }
}
