// The journal's metrics, read at scrape time from its counters (README "Metrics").
import type { Metrics } from '../metrics'
import type { JournalCounters } from './journal'

export function registerJournalMetrics(m: Pick<Metrics, 'gauge' | 'counter'>, read: () => JournalCounters): void {
  // Names ending in _total are counters (they only grow); the rest are gauges.
  const one = (name: string, help: string, value: (c: JournalCounters) => number) =>
    name.endsWith('_total')
      ? m.counter(name, help, [], (set) => set({}, value(read())))
      : m.gauge(name, help, [], (set) => set({}, value(read())))
  one('mxgate_journal_bytes', 'Bytes of the replay journal on disk (segments, indexes, replay marks)', (c) => c.bytes)
  one(
    'mxgate_journal_oldest_entry_age_seconds',
    'Age of the oldest segment of the journal: how far back a replay can reach (0 when empty)',
    (c) => (c.oldestAt === null ? 0 : Math.max(0, (Date.now() - c.oldestAt) / 1000)),
  )
  one('mxgate_journal_entries_written_total', 'Messages written to the journal', (c) => c.written)
  one(
    'mxgate_journal_write_errors_total',
    'Journal batches that failed to write (full disk, I/O error); the mail itself was relayed',
    (c) => c.writeErrors,
  )
  one(
    'mxgate_journal_dropped_total',
    'Messages relayed but not journaled (their batch failed, or the disk was too slow): replay cannot send them',
    (c) => c.dropped,
  )
  one('mxgate_journal_degraded', '1 while the journal cannot write (see the log for why)', (c) =>
    c.degraded === null ? 0 : 1,
  )
  one(
    'mxgate_journal_replayed_messages_total',
    'Messages put back into the spool by replays',
    (c) => c.replayedMessages,
  )
  one('mxgate_journal_replayed_bytes_total', 'Body bytes put back into the spool by replays', (c) => c.replayedBytes)
}
