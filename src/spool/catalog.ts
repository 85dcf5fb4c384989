// The in-memory catalog of a spool: envelopes by id (bodies stay on disk), byte and message counts including
// writes in flight, and which limit a new message would break.
import type { SpoolLimit } from './errors'
import type { SpoolEntry } from './format'

export interface Indexed {
  entry: SpoolEntry
  /** Sequence number of the envelope sidecar in force; 0 = the header inside the message file. */
  seq: number
  /**
   * The entry holds progress that is not on disk yet (an envelope write failed): it is newer than the file, so
   * reading the file again must not replace it. Cleared by the next successful update.
   */
  unsaved?: boolean
}

/** Held only because its DSN could not be sent: every recipient is settled, the sender is owed a bounce. */
export function isHeldDsn(e: SpoolEntry): boolean {
  return e.held && e.pending.length === 0 && e.bounced.length > 0
}

export interface Limits {
  maxMessages: number
  maxBytes: number
  minFreeBytes: number
}

export class Catalog {
  private readonly map = new Map<string, Indexed>()
  private bytesStored = 0
  private inflightMessages = 0
  private inflightBytes = 0
  /** Entries held only for their DSN (isHeldDsn): they have their own bound and do not count toward the limits. */
  private heldDsnMessages = 0
  private heldDsnBytes = 0

  constructor(private readonly limits: Limits) {}

  get size(): number {
    return this.map.size
  }

  get bytes(): number {
    return this.bytesStored
  }

  get(id: string): Indexed | undefined {
    return this.map.get(id)
  }

  has(id: string): boolean {
    return this.map.has(id)
  }

  ids(): string[] {
    return [...this.map.keys()]
  }

  seqs(): Map<string, number> {
    return new Map([...this.map].map(([id, ix]) => [id, ix.seq]))
  }

  entries(): SpoolEntry[] {
    return [...this.map.values()].map((ix) => ix.entry)
  }

  /** Messages held only for their DSN (see isHeldDsn). */
  get heldDsn(): number {
    return this.heldDsnMessages
  }

  put(id: string, ix: Indexed): void {
    this.drop(id)
    this.bytesStored += ix.entry.size
    if (isHeldDsn(ix.entry)) {
      this.heldDsnMessages++
      this.heldDsnBytes += ix.entry.size
    }
    this.map.set(id, { entry: freeze(ix.entry), seq: ix.seq, ...(ix.unsaved ? { unsaved: true } : {}) })
  }

  drop(id: string): void {
    const ix = this.map.get(id)
    if (!ix) return
    this.bytesStored -= ix.entry.size
    if (isHeldDsn(ix.entry)) {
      this.heldDsnMessages--
      this.heldDsnBytes -= ix.entry.size
    }
    this.map.delete(id)
  }

  /** Entries ready for another attempt: not held, something pending, nextAttemptAt <= now; oldest received first. */
  due(now: number, limit: number): SpoolEntry[] {
    const ready: SpoolEntry[] = []
    for (const { entry } of this.map.values()) {
      if (!entry.held && entry.pending.length > 0 && entry.nextAttemptAt <= now) ready.push(entry)
    }
    ready.sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    return ready.slice(0, Math.max(0, limit))
  }

  /**
   * Which limit one more message of `size` bytes would break, counting writes still in flight. Messages held only
   * for their DSN are left out of maxMessages and maxBytes (they have their own bound, spool.held_dsn_max), so
   * bounces nobody can send never make the node refuse mail; their bytes still count for minFreeBytes (the disk).
   */
  fullReason(size: number, free: number): { limit: SpoolLimit; detail: string } | null {
    const { maxMessages, maxBytes, minFreeBytes } = this.limits
    const messages = this.map.size - this.heldDsnMessages + this.inflightMessages
    const bytes = this.bytesStored - this.heldDsnBytes + this.inflightBytes
    if (messages + 1 > maxMessages) {
      return { limit: 'maxMessages', detail: `${messages} messages spooled, limit ${maxMessages}` }
    }
    if (bytes + size > maxBytes) {
      return { limit: 'maxBytes', detail: `${bytes} bytes spooled + ${size} would pass the limit of ${maxBytes}` }
    }
    if (free - size < minFreeBytes) {
      return { limit: 'minFreeBytes', detail: `${free} bytes free on the spool disk, keeping ${minFreeBytes}` }
    }
    return null
  }

  /** Count a write in flight (call right after fullReason() said yes, with no await in between). */
  begin(size: number): void {
    this.inflightMessages++
    this.inflightBytes += size
  }

  end(size: number): void {
    this.inflightMessages--
    this.inflightBytes -= size
  }
}

/** Entries handed out are frozen: a caller that mutates one by mistake gets a TypeError, not a silent divergence. */
function freeze(e: SpoolEntry): SpoolEntry {
  for (const a of [e.to, e.pending, e.done, e.bounced, e.lastErrors]) Object.freeze(a)
  return Object.freeze(e)
}
