// Typed errors of the state store. Callers check `instanceof` or `code`, never message text.

export const REDIS_URL_FORMS =
  'redis://[user:pass@]host[:port][/db], rediss://[user:pass@]host[:port][/db] (TLS), ' +
  'redis-sentinel://[user:pass@]host:port[,host:port...]/mastername[/db], ' +
  'or redis-cluster://[user:pass@]host:port[,host:port...]'

/** A Redis URL we cannot use. The message names the value (password masked) and the accepted forms. */
export class RedisUrlError extends Error {
  readonly code = 'EREDISURL'
  constructor(
    readonly url: string,
    readonly why: string,
  ) {
    super(`invalid Redis URL "${maskPassword(url)}": ${why}; expected ${REDIS_URL_FORMS}`)
    this.name = 'RedisUrlError'
  }
}

/** A value handed to setOverride/setEjection that the other nodes could not read back. */
export class InvalidStateError extends Error {
  readonly code = 'EBADSTATE'
  constructor(
    readonly id: string,
    why: string,
  ) {
    super(`invalid state for backend "${id}": ${why}`)
    this.name = 'InvalidStateError'
  }
}

/** A store option that cannot work (empty prefix, bucket longer than retention...). */
export class StoreOptionError extends Error {
  readonly code = 'ESTOREOPTION'
  constructor(
    readonly option: string,
    why: string,
  ) {
    super(`state store option ${option}: ${why}`)
    this.name = 'StoreOptionError'
  }
}

/** A write after stop(): a bug in the caller's shutdown order. */
export class StoreStoppedError extends Error {
  readonly code = 'ESTORESTOPPED'
  constructor(what: string) {
    super(`${what} after the state store was stopped; stop the health engine before the store`)
    this.name = 'StoreStoppedError'
  }
}

/** Replace the password in a URL's user info with *** so errors and logs never carry it. */
export function maskPassword(url: string): string {
  // Up to the last "@": a password may itself hold "@" or "/" (parseRedisUrl splits at the last "@" too).
  return url.replace(/^([a-z+-]+:\/\/[^:@/]*:).*@/is, '$1***@')
}
