// Which spooled messages the runner starts next: those due, then those being drained, never one it is working on
// already, nor one it backs off from (its claim was lost to another process, or its delivery failed). Memory only.
import type { SpoolEntry } from '../spool/format'

/** What the picker needs of the spool: the entries due now, and one entry by id. */
export interface DueSource {
  due(now: number, limit: number): SpoolEntry[]
  get(id: string): SpoolEntry | undefined
}

export class SpoolPicker {
  /** Messages being worked on now: never picked again until done (a claim of our own would fail). */
  private readonly active = new Set<string>()
  /** Messages not to pick before a time. */
  private readonly notBefore = new Map<string, number>()
  /** Messages to try now whatever their schedule (a drain: at start, on re-admission, on flush), in order. */
  private readonly draining = new Set<string>()

  constructor(private readonly spool: DueSource) {}

  /** Add messages to the drain (they are tried in the order given, after those due). */
  drain(ids: string[]): void {
    for (const id of ids) {
      this.draining.add(id)
      this.notBefore.delete(id)
    }
  }

  isActive(id: string): boolean {
    return this.active.has(id)
  }

  /** Mark `id` as worked on (it leaves the drain); false if it already is. */
  begin(id: string): boolean {
    if (this.active.has(id)) return false
    this.active.add(id)
    this.draining.delete(id)
    return true
  }

  end(id: string): void {
    this.active.delete(id)
  }

  backOff(id: string, until: number): void {
    this.notBefore.set(id, until)
  }

  /** May work on `e` start now? Not while it is active, nor while it is backed off from. */
  free(e: SpoolEntry, now: number): boolean {
    const until = this.notBefore.get(e.id)
    return !this.active.has(e.id) && (until === undefined || until <= now)
  }

  /** Up to `room` messages to start now: those due, then those being drained (begin() takes them off the drain). */
  pick(now: number, room: number): SpoolEntry[] {
    for (const [id, until] of this.notBefore) if (until <= now) this.notBefore.delete(id)
    const out: SpoolEntry[] = []
    const chosen = new Set<string>()
    // Ask for enough that the ones skipped (active, backed off) cannot crowd out the rest.
    for (const e of this.spool.due(now, room + this.active.size + this.notBefore.size)) {
      if (out.length >= room) break
      if (this.free(e, now)) {
        out.push(e)
        chosen.add(e.id)
      }
    }
    for (const id of this.draining) {
      if (out.length >= room) break
      const e = this.spool.get(id)
      if (!e || e.held || e.pending.length === 0 || chosen.has(id)) {
        this.draining.delete(id)
        continue
      }
      if (!this.free(e, now)) continue
      out.push(e)
      chosen.add(id)
    }
    return out
  }
}
