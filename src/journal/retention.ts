// Which journal segments retention removes: pure, so the rule can be tested without a disk.

export interface RetentionLimits {
  /** A segment whose newest record is older than this goes. */
  maxAgeMs: number
  /** max_size: the journal never holds more than this. */
  maxBytes: number
  /** disk_share: nor more than this share of the space it could use (its own bytes plus what is free). */
  diskShare: number
}

export interface SegmentSize {
  base: string
  bytes: number
  /** The newest record's time (the data file's last write). */
  mtimeMs: number
}

/** The byte limit that applies now: the smaller of max_size and disk_share of (journal + free space). */
export function byteLimit(limits: RetentionLimits, journalBytes: number, freeBytes: number): number {
  return Math.min(limits.maxBytes, Math.floor(limits.diskShare * (journalBytes + freeBytes)))
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
