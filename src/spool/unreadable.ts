// Spool files that could not be read for a reason other than corruption (EIO, EMFILE, EACCES): which ones, when to
// read each again (1 s doubling to 60 s), and the one alert for a file that stays unreadable. No I/O of its own.
import type { Logger } from '../log'
import { errnoOf } from './errors'

/** A file that could not be read is read again after this long, doubling up to RETRY_MAX_MS. */
const RETRY_MS = 1000
const RETRY_MAX_MS = 60_000
/** Failed reads after which an unreadable file is reported at error level (once): a one-off EIO is not. */
const ALERT_AFTER = 3

interface Unreadable {
  file: string
  errno: string
  since: number
  failures: number
  retryAt: number
  alerted: boolean
}

export class UnreadableFiles {
  private readonly byId = new Map<string, Unreadable>()

  constructor(private readonly log: Logger) {}

  get size(): number {
    return this.byId.size
  }

  /** Ids whose next read is due at `now`. */
  due(now: number): string[] {
    return [...this.byId].filter(([, u]) => u.retryAt <= now).map(([id]) => id)
  }

  /** Is `id` unreadable and its next read not yet due? (A refresh of a shared spool leaves it to its backoff.) */
  waiting(id: string, now: number): boolean {
    const u = this.byId.get(id)
    return u !== undefined && u.retryAt > now
  }

  /** A read of `file` (of message `id`) failed: schedule the next one; warn at the first, alert once later. */
  failed(id: string, file: string, err: unknown, now = Date.now()): void {
    const errno = errnoOf(err) ?? 'UNKNOWN'
    const prev = this.byId.get(id)
    const failures = (prev?.failures ?? 0) + 1
    const u: Unreadable = {
      file,
      errno,
      since: prev?.since ?? now,
      failures,
      retryAt: now + Math.min(RETRY_MAX_MS, RETRY_MS * 2 ** (failures - 1)),
      alerted: prev?.alerted ?? false,
    }
    this.byId.set(id, u)
    if (failures === 1) {
      this.log.warn({ id, file, errno, err }, 'cannot read a spool file; not quarantined, reading it again shortly')
    } else if (failures >= ALERT_AFTER && !u.alerted) {
      u.alerted = true
      this.log.error(
        { id, file, errno, failures, sinceMs: now - u.since },
        `spool file ${file} stays unreadable (${errno}); its message is not delivered until it can be read: check the spool disk and permissions`,
      )
    }
  }

  /** The message was read after all: say so if it had failed before. */
  readable(id: string): void {
    const was = this.byId.get(id)
    if (!was) return
    this.byId.delete(id)
    this.log.info({ id, file: was.file, failures: was.failures }, 'spool file readable again; message resumed')
  }

  /** The message is gone (removed, or quarantined as corrupt): nothing to retry. */
  forget(id: string): void {
    this.byId.delete(id)
  }
}
