// The settings of how a node meets its operators and its load balancer: shutdown timing, the PROXY protocol and the
// log. load.ts merges these into its table.
import net from 'node:net'
import { LOG_LEVELS, type LogLevel } from '../log'
import type { MxgateConfig } from './schema'
import { parseDuration } from './units'

type Setter = (cfg: MxgateConfig, raw: string) => true | { error: string }

function duration(set: (c: MxgateConfig, ms: number) => void, min: number, max: number, example: string): Setter {
  return (c, raw) => {
    const ms = parseDuration(raw)
    if (ms === null) return { error: `"${raw}" is not a duration; write e.g. ${example}` }
    if (ms < min || ms > max)
      return { error: `"${raw}" must be from ${min / 1000}s to ${max / 1000}s, e.g. ${example}` }
    set(c, ms)
    return true
  }
}

const PROXY_EXAMPLE = 'list the load balancers, e.g. proxy_hosts = 10.0.0.5, 10.0.1.0/24, fd00::/64'

/**
 * The load balancers allowed to send a PROXY protocol header: addresses or CIDR blocks, comma or space separated,
 * normalised to "address/prefix". Empty = none. A block holding every address (/0) is refused: any client could
 * then claim any address.
 */
export function parseProxyHosts(raw: string): string[] | { error: string } {
  const out: string[] = []
  for (const item of raw.split(/[,\s]+/).filter((x) => x !== '')) {
    const [addr = '', prefix, extra] = item.split('/')
    const family = net.isIP(addr)
    const max = family === 6 ? 128 : 32
    const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : Number.NaN
    if (family === 0 || extra !== undefined || !(bits >= 0 && bits <= max)) {
      return { error: `"${item}" is not an IP address or CIDR block; ${PROXY_EXAMPLE}` }
    }
    if (bits === 0) {
      return { error: `"${item}" trusts every address, so any client could claim any address; ${PROXY_EXAMPLE}` }
    }
    out.push(`${addr.toLowerCase()}/${bits}`)
  }
  return [...new Set(out)]
}

export const OPS_KEYS: Record<string, Setter> = {
  'log.level': (c, raw) => {
    const level = LOG_LEVELS.find((l) => l === raw.toLowerCase())
    if (level === undefined) return { error: `"${raw}" must be one of ${LOG_LEVELS.join(', ')}` }
    c.log.level = level satisfies LogLevel
    return true
  },
  'log.redact_addresses': (c, raw) => {
    const v = raw.toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(v)) c.log.redactAddresses = true
    else if (['false', 'no', 'off', '0'].includes(v)) c.log.redactAddresses = false
    else return { error: `"${raw}" must be true or false` }
    return true
  },
  'smtp.proxy_hosts': (c, raw) => {
    const hosts = parseProxyHosts(raw)
    if (!Array.isArray(hosts)) return hosts
    c.smtp.proxyHosts = hosts
    return true
  },
  'smtp.shutdown_grace': duration(
    (c, v) => {
      c.smtp.shutdownGraceMs = v
    },
    0,
    600_000,
    '5s (0 closes the listener at once)',
  ),
  'smtp.shutdown_timeout': duration(
    (c, v) => {
      c.smtp.shutdownTimeoutMs = v
    },
    1000,
    3_600_000,
    '60s',
  ),
}

/** Environment variables for these settings (load.ts adds them to its own). */
export const OPS_ENV: Record<string, string> = {
  MXGATE_SHUTDOWN_GRACE: 'smtp.shutdown_grace',
  MXGATE_SHUTDOWN_TIMEOUT: 'smtp.shutdown_timeout',
  MXGATE_PROXY_HOSTS: 'smtp.proxy_hosts',
  MXGATE_LOG_LEVEL: 'log.level',
  MXGATE_LOG_REDACT_ADDRESSES: 'log.redact_addresses',
}
