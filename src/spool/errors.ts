// Typed spool errors. Callers branch on `instanceof` or `code`, never on message text.

export type SpoolErrorCode =
  | 'ESPOOLFULL'
  | 'ESPOOLWRITE'
  | 'ESPOOLCORRUPT'
  | 'ESPOOLNOTFOUND'
  | 'ESPOOLCONFIG'
  | 'ESPOOLSTATE'
  | 'EDSN'

export abstract class SpoolError extends Error {
  abstract readonly code: SpoolErrorCode
}

export type SpoolLimit = 'maxMessages' | 'maxBytes' | 'minFreeBytes'

/** The spool refused a message because a limit is reached; nothing was written. Map to 451 4.3.4. */
export class SpoolFullError extends SpoolError {
  readonly code = 'ESPOOLFULL' as const
  constructor(
    readonly limit: SpoolLimit,
    readonly detail: string,
  ) {
    super(`spool full: ${limit} reached (${detail}); deliver or remove spooled mail, or raise spool.${limit}`)
    this.name = 'SpoolFullError'
  }
}

/** A file-system operation failed while making a message durable; no partial file was left behind. */
export class SpoolWriteError extends SpoolError {
  readonly code = 'ESPOOLWRITE' as const
  /** The errno code of the cause (ENOSPC, EIO, EACCES, ...) or 'UNKNOWN'. */
  readonly errno: string
  constructor(
    readonly op: string,
    readonly path: string,
    override readonly cause: unknown,
  ) {
    const errno = errnoOf(cause) ?? 'UNKNOWN'
    super(`spool ${op} failed for ${path}: ${messageOf(cause)}; check the disk and permissions of the spool directory`)
    this.name = 'SpoolWriteError'
    this.errno = errno
  }
}

/** A spool file does not decode: bad magic, version, lengths, checksum or envelope field. */
export class SpoolCorruptError extends SpoolError {
  readonly code = 'ESPOOLCORRUPT' as const
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`spool file ${file} is corrupt: ${reason}`)
    this.name = 'SpoolCorruptError'
  }
}

export class SpoolNotFoundError extends SpoolError {
  readonly code = 'ESPOOLNOTFOUND' as const
  constructor(readonly id: string) {
    super(`spool entry ${id} not found (already delivered or removed); call refresh() to re-read the spool directory`)
    this.name = 'SpoolNotFoundError'
  }
}

/** An option or argument is out of range. */
export class SpoolConfigError extends SpoolError {
  readonly code = 'ESPOOLCONFIG' as const
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`spool option ${key}: ${detail}`)
    this.name = 'SpoolConfigError'
  }
}

/** The store was used before open() resolved (or after a failed open). */
export class SpoolStateError extends SpoolError {
  readonly code = 'ESPOOLSTATE' as const
  constructor(detail: string) {
    super(detail)
    this.name = 'SpoolStateError'
  }
}

/** A delivery status notification cannot or must not be built (e.g. the original sender is null). */
export class DsnError extends SpoolError {
  readonly code = 'EDSN' as const
  constructor(detail: string) {
    super(detail)
    this.name = 'DsnError'
  }
}

export function isSpoolError(err: unknown): err is SpoolError {
  return err instanceof SpoolError
}

export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code
  return undefined
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
