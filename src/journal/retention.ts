// Which journal segments retention removes: pure, so the rule can be tested without a disk.

export interface RetentionLimits {
  /** A segment whose newest record is older than this goes. */
  maxAgeMs: number
  /** max_size: the journal never holds more than this. */
  maxBytes: number
  /** disk_share: nor more than this share of the space it could use (its own bytes plus what is free). */
  diskShare: number
  /**
   * Free space the journal leaves alone: the spool's min_free_disk (the journal lives under the spool dir by default,
   * and mail not yet delivered comes before copies of mail that was). Twice this stays free, so the spool can work.
   */
  reserveBytes?: number
}

export interface SegmentSize {
  base: string
  bytes: number
  /** The newest record's time (the data file's last write). */
  mtimeMs: number
}

/**
 * The byte limit that applies now: the smallest of max_size, disk_share of (journal + free space), and what leaves
 * twice the reserve free.
 */
export function byteLimit(limits: RetentionLimits, journalBytes: number, freeBytes: number): number {
  const usable = journalBytes + freeBytes
  const beyondReserve = Math.max(0, usable - 2 * (limits.reserveBytes ?? 0))
  return Math.min(limits.maxBytes, Math.floor(limits.diskShare * usable), beyondReserve)
}

/** Whether writing `bytes` more would leave less than twice the reserve free. */
export function eatsReserve(limits: RetentionLimits, freeBytes: number, bytes: number): boolean {
  return freeBytes - bytes < 2 * (limits.reserveBytes ?? 0)
}

/**
 * Segments (given oldest first) to remove: every one past the age limit, then the oldest until the rest fit in
 * `maxBytes`. Segments in `keep` (being written now) stay whatever their size or age.
 */
export function segmentsToRemove(
  segments: readonly SegmentSize[],
  maxAgeMs: number,
  maxBytes: number,
  now: number,
  keep: ReadonlySet<string>,
): string[] {
  const out: string[] = []
  let total = segments.reduce((n, s) => n + s.bytes, 0)
  for (const s of segments) {
    if (keep.has(s.base)) continue
    if (now - s.mtimeMs > maxAgeMs || total > maxBytes) {
      out.push(s.base)
      total -= s.bytes
    }
  }
  return out
}
