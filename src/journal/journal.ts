// The replay journal of one node: the writer that keeps what backends took, the reader that finds it again, and
// replay into the spool. The engine builds one and hands it to the relay (JournalPort) and the admin API.
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { type FoundEntry, type JournalQuery, JournalReader } from './reader'
import { type ReplayRequest, type ReplayResult, type ReplaySpool, replay } from './replay'
import { type DeliveredTo, type JournalStats, JournalWriter, type JournalWriterOptions } from './writer'

export interface JournalCounters extends JournalStats {
  /** Messages and body bytes put back into the spool by replays (dry runs not counted). */
  replayedMessages: number
  replayedBytes: number
}

export class Journal {
  readonly writer: JournalWriter
  readonly reader: JournalReader
  private replayedMessages = 0
  private replayedBytes = 0
  /** One replay at a time on this node: two at once could both send an entry before either marks it. */
  private replaying: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly opts: JournalWriterOptions,
    private readonly log: Logger,
  ) {
    this.writer = new JournalWriter(opts, log)
    this.reader = new JournalReader(opts.dir)
  }

  get enabled(): boolean {
    return this.opts.enabled
  }

  get dir(): string {
    return this.opts.dir
  }

  open(): Promise<void> {
    return this.writer.open()
  }

  close(): Promise<void> {
    return this.writer.close()
  }

  delivered(msg: InboundMessage, deliveries: readonly DeliveredTo[]): void {
    this.writer.delivered(msg, deliveries)
  }

  /** What a replay of this window would send (and what an earlier one already sent). Waits for the current batch. */
  async list(q: JournalQuery): Promise<FoundEntry[]> {
    await this.writer.flush()
    return this.reader.find(q)
  }

  /** Puts what `req.backend` took in the window back into `spool`, for any backend but that one. */
  replay(req: ReplayRequest, spool: ReplaySpool): Promise<ReplayResult> {
    const run = this.replaying.then(async () => {
      await this.writer.flush()
      const r = await replay(this.reader, spool, req, this.log, this.opts.fsync)
      if (!req.dryRun) {
        this.replayedMessages += r.messages
        this.replayedBytes += r.bytes
      }
      return r
    })
    this.replaying = run.catch(() => undefined)
    return run
  }

  counters(): JournalCounters {
    return { ...this.writer.stats(), replayedMessages: this.replayedMessages, replayedBytes: this.replayedBytes }
  }
}
