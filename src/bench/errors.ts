// Typed failures of the benchmark harness, told apart by `code`, never by message text.

export type BenchErrorCode =
  | 'EBENCHARGS' // bad command-line argument
  | 'EBENCHTOOL' // a required program (smtp-sink, postfix) is missing and could not be installed
  | 'EBENCHSTART' // a peer (sink, Postfix, Haraka, mxgate) did not come up
  | 'EBENCHTIMEOUT' // a bounded wait ran out
  | 'EBENCHUNAVAILABLE' // a row cannot be measured yet (e.g. bin/mxgate.js missing, spool not wired)

export class BenchError extends Error {
  readonly code: BenchErrorCode

  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BenchError'
    this.code = code
  }
}

export function isBenchError(err: unknown, code?: BenchErrorCode): err is BenchError {
  return err instanceof BenchError && (code === undefined || err.code === code)
}
