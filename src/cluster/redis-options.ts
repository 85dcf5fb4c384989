// Turn a Redis URL into ioredis options, and build the two clients the store uses with settings that keep the SMTP
// path from ever waiting on Redis: no offline queue, one retry, a short command timeout, a capped reconnect delay.
import { isIP } from 'node:net'
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import { maskPassword, RedisUrlError } from './errors'

export interface HostPort {
  host: string
  port: number
}

interface Credentials {
  username?: string
  password?: string
}

export type RedisTarget =
  | ({ mode: 'standalone'; host: string; port: number; db: number; tls: boolean } & Credentials & Common)
  | ({ mode: 'sentinel'; sentinels: HostPort[]; masterName: string; db: number } & Credentials & Common)
  | ({ mode: 'cluster'; nodes: HostPort[] } & Credentials & Common)

interface Common {
  /** The URL with the password masked: for logs. */
  display: string
}

const SCHEMES: Record<string, 'standalone' | 'tls' | 'sentinel' | 'cluster'> = {
  redis: 'standalone',
  rediss: 'tls',
  'redis-sentinel': 'sentinel',
  'redis+sentinel': 'sentinel',
  'redis-cluster': 'cluster',
  'redis+cluster': 'cluster',
}

/** Parse a Redis URL (see REDIS_URL_FORMS); throws RedisUrlError naming the value and the accepted forms. */
export function parseRedisUrl(url: string): RedisTarget {
  const fail = (why: string): never => {
    throw new RedisUrlError(url, why)
  }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url.trim())
  if (m === null) return fail('it has no scheme://')
  const scheme = (m[1] ?? '').toLowerCase()
  let rest = m[2] ?? ''
  const kind = SCHEMES[scheme]
  if (kind === undefined) return fail(`unknown scheme "${scheme}:"`)
  if (/[?#]/.test(rest)) return fail('query strings and fragments are not supported')

  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const pathPart = slash === -1 ? '' : rest.slice(slash + 1)
  rest = authority
  const at = authority.lastIndexOf('@')
  const creds: Credentials = {}
  if (at !== -1) {
    const userinfo = authority.slice(0, at)
    rest = authority.slice(at + 1)
    const colon = userinfo.indexOf(':')
    const user = decode(colon === -1 ? userinfo : userinfo.slice(0, colon), fail)
    const pass = colon === -1 ? '' : decode(userinfo.slice(colon + 1), fail)
    // "redis://:secret@host" is the classic password-only form (AUTH secret); "user@host" alone is a username.
    if (user !== '') creds.username = user
    if (pass !== '') creds.password = pass
  }
  if (rest === '') return fail('it names no host')
  const defaultPort = kind === 'sentinel' ? 26379 : 6379
  const hosts = rest.split(',').map((h) => parseHostPort(h, defaultPort, fail))
  const segments = pathPart === '' ? [] : pathPart.replace(/\/$/, '').split('/')
  const display = maskPassword(url.trim())

  if (kind === 'standalone' || kind === 'tls') {
    if (hosts.length > 1)
      return fail('only one host is allowed here; use redis-sentinel:// or redis-cluster:// for several')
    if (segments.length > 1) return fail('the path must be a database number, e.g. /0')
    const host = hosts[0] as HostPort
    return { mode: 'standalone', ...host, db: parseDb(segments[0], fail), tls: kind === 'tls', ...creds, display }
  }
  if (kind === 'sentinel') {
    const masterName = segments[0] === undefined ? '' : decode(segments[0], fail)
    if (masterName === '') return fail('the sentinel form needs the master name after the hosts, e.g. /mymaster')
    if (segments.length > 2) return fail('after the master name only a database number may follow, e.g. /mymaster/0')
    return { mode: 'sentinel', sentinels: hosts, masterName, db: parseDb(segments[1], fail), ...creds, display }
  }
  if (segments.length > 0) return fail('Redis Cluster has no databases or names: remove the path')
  return { mode: 'cluster', nodes: hosts, ...creds, display }
}

function decode(s: string, fail: (why: string) => never): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return fail('the user info is not valid percent-encoding')
  }
}

function parseHostPort(text: string, defaultPort: number, fail: (why: string) => never): HostPort {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::(\d*))?$/.exec(text)
  if (m === null) return fail(`"${text}" is not host[:port]`)
  const host = m[1] ?? m[2] ?? ''
  if (m[1] !== undefined && isIP(host) !== 6) return fail(`"${text}" is not a valid IPv6 address`)
  const port = m[3] === undefined || m[3] === '' ? defaultPort : Number(m[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) return fail(`port in "${text}" must be 1-65535`)
  return { host, port }
}

function parseDb(segment: string | undefined, fail: (why: string) => never): number {
  if (segment === undefined || segment === '') return 0
  if (!/^\d{1,5}$/.test(segment)) return fail(`database "${segment}" must be a number, e.g. /0`)
  return Number(segment)
}

export interface ClientTuning {
  /** A command without a reply by then fails (and the write is kept to replay). Default 500 ms. */
  commandTimeoutMs: number
  /** Longest wait between reconnect attempts. Default 2000 ms. */
  maxRetryDelayMs: number
  /** TCP + handshake limit for one connection attempt. Default 2000 ms. */
  connectTimeoutMs: number
  /** Shown in CLIENT LIST. */
  connectionName: string
}

export const DEFAULT_TUNING: ClientTuning = {
  commandTimeoutMs: 500,
  maxRetryDelayMs: 2000,
  connectTimeoutMs: 2000,
  connectionName: 'mxgate',
}

export type RedisClient = Redis | Cluster
export type ClientRole = 'command' | 'subscriber'

/** Retry forever, 100 ms doubling up to the cap: Redis coming back is noticed within `cap` ms. */
export function cappedBackoff(cap: number): (times: number) => number {
  return (times) => Math.min(100 * 2 ** Math.min(Math.max(times - 1, 0), 16), cap)
}

/**
 * ioredis options for one role. The command client fails fast while Redis is away (the store keeps the write and
 * replays it); the subscriber queues its SUBSCRIBE until connected and re-subscribes after every reconnect.
 */
export function redisOptions(
  target: RedisTarget,
  role: ClientRole,
  tuning: ClientTuning = DEFAULT_TUNING,
): RedisOptions {
  const common: RedisOptions = {
    connectTimeout: tuning.connectTimeoutMs,
    retryStrategy: cappedBackoff(tuning.maxRetryDelayMs),
    connectionName: `${tuning.connectionName}:${role}`,
    ...(role === 'command'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: tuning.commandTimeoutMs }
      : { enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true }),
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
  }
  if (target.mode === 'standalone') {
    const tls = target.tls ? { tls: isIP(target.host) === 0 ? { servername: target.host } : {} } : {}
    return { ...common, host: target.host, port: target.port, db: target.db, ...tls }
  }
  if (target.mode === 'sentinel') {
    return {
      ...common,
      sentinels: target.sentinels,
      name: target.masterName,
      db: target.db,
      sentinelRetryStrategy: cappedBackoff(tuning.maxRetryDelayMs),
      sentinelCommandTimeout: tuning.commandTimeoutMs,
    }
  }
  return common
}

/** ioredis Cluster options for one role (see redisOptions). */
export function clusterOptions(
  target: Extract<RedisTarget, { mode: 'cluster' }>,
  role: ClientRole,
  tuning: ClientTuning = DEFAULT_TUNING,
): ClusterOptions {
  const { retryStrategy, enableOfflineQueue, ...perNode } = redisOptions(target, role, tuning)
  return {
    clusterRetryStrategy: cappedBackoff(tuning.maxRetryDelayMs),
    enableOfflineQueue: enableOfflineQueue ?? true,
    slotsRefreshTimeout: tuning.commandTimeoutMs * 2,
    redisOptions: perNode,
  }
}

/** A connecting client for the target; the caller attaches an 'error' listener at once. */
export function createRedisClient(target: RedisTarget, role: ClientRole, tuning?: ClientTuning): RedisClient {
  // ioredis' constructor types do not accept its own option types under exactOptionalPropertyTypes; pin the mapping.
  type Legacy = { replyMapping?: 'legacy' }
  if (target.mode === 'cluster') {
    const { redisOptions: perNode, ...options } = clusterOptions(target, role, tuning)
    return new Cluster(target.nodes, { ...options, redisOptions: perNode as NonNullable<typeof perNode> & Legacy })
  }
  return new Redis(redisOptions(target, role, tuning) as RedisOptions & Legacy)
}
