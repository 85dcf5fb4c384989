// The PROXY protocol from the load balancer: only the hosts in smtp.proxy_hosts may (and must) start a connection
// with a PROXY header; it then sets the client's real address before any hook sees the connection, so limits, logs
// and the Received header use it. Haraka 3.3.4 reads v1 headers; this adds v2 and closes two gaps in its handling.
// It patches Haraka's Connection (_process_data, apply_proxy, cmd_proxy) and haraka-net-utils: re-check when
// upgrading.
import net from 'node:net'
import path from 'node:path'
import constants from 'haraka-constants'
import { ConfigError } from '../config/load'
import type { MxgateConfig } from '../config/schema'
import { type ProxyAddresses, parseProxyV2 } from '../inbound/proxy-v2'
import type { Logger } from '../log'

interface ProxyConnection {
  state: number
  current_data: Buffer | null
  remote: { ip: string; port: number }
  local: { ip: string; port: number }
  proxy: { allowed: boolean; timer: NodeJS.Timeout | null }
  respond(code: number, msg: string, cb?: () => void): unknown
  disconnect(): void
  apply_proxy(proxy: ProxyAddresses): void
}

interface ConnectionPrototype {
  _process_data(this: ProxyConnection): unknown
  apply_proxy(this: ProxyConnection, proxy: ProxyAddresses): unknown
  cmd_proxy(this: ProxyConnection, line: string): unknown
}

interface HarakaNetUtils {
  is_haproxy_allowed(ip: string): boolean
  config: { get(name: string): { haproxy?: { hosts?: string[] } } | undefined }
}

/** A BlockList check for "address/prefix" entries; IPv4-mapped IPv6 peers are checked as IPv4. */
export function proxyAllowList(hosts: readonly string[]): (ip: string) => boolean {
  const list = new net.BlockList()
  for (const h of hosts) {
    const [addr = '', bits = ''] = h.split('/')
    list.addSubnet(addr, Number(bits), net.isIPv6(addr) ? 'ipv6' : 'ipv4')
  }
  return (ip) => {
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1]
    if (v4 !== undefined) return list.check(v4, 'ipv4')
    return net.isIPv6(ip) ? list.check(ip, 'ipv6') : net.isIPv4(ip) && list.check(ip, 'ipv4')
  }
}

/** The connection's own addresses, for PROXY UNKNOWN and v2 LOCAL (a balancer's health check). */
function ownAddresses(c: ProxyConnection): ProxyAddresses {
  return {
    proto: net.isIPv6(c.remote.ip) ? 'TCP6' : 'TCP4',
    src_ip: c.remote.ip,
    src_port: String(c.remote.port),
    dst_ip: c.local.ip,
    dst_port: String(c.local.port),
  }
}

/** A reload changed smtp.proxy_hosts: connections from now on are judged by the new list (Haraka asks per connection). */
export function retuneProxyHosts(cfg: MxgateConfig, log: Logger): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as HarakaNetUtils
  netUtils.is_haproxy_allowed = proxyAllowList(cfg.smtp.proxyHosts)
  log.info({ proxyHosts: cfg.smtp.proxyHosts }, 'PROXY protocol hosts reloaded')
}

export function installProxyProtocol(cfg: MxgateConfig, root: string, log: Logger): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as HarakaNetUtils
  const legacy = (netUtils.config.get('connection.ini')?.haproxy?.hosts ?? []).filter((h) => h.trim() !== '')
  if (legacy.length > 0) {
    throw new ConfigError(
      path.join(root, 'config', 'connection.ini'),
      'haproxy.hosts',
      `mxgate does not read Haraka's PROXY host list; move ${legacy.join(', ')} to [smtp] proxy_hosts in mxgate.ini (or MXGATE_PROXY_HOSTS) and delete it here`,
    )
  }
  const allowed = proxyAllowList(cfg.smtp.proxyHosts)
  netUtils.is_haproxy_allowed = allowed
  if (cfg.smtp.proxyHosts.length > 0) log.info({ proxyHosts: cfg.smtp.proxyHosts }, 'PROXY protocol from these hosts')

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const proto = (require('Haraka/connection') as { Connection: { prototype: ConnectionPrototype } }).Connection
    .prototype
  // One header per connection: Haraka left `allowed` set, so a client behind the balancer could send its own
  // "PROXY TCP4 <any address> …" command after the greeting and be believed.
  const applyProxy = proto.apply_proxy
  proto.apply_proxy = function (this: ProxyConnection, p: ProxyAddresses) {
    this.proxy.allowed = false
    return applyProxy.call(this, p)
  }
  // "PROXY UNKNOWN" (a balancer that cannot tell, or its health check) means: use the connection's own addresses.
  // Haraka refuses it as an invalid format.
  const cmdProxy = proto.cmd_proxy
  proto.cmd_proxy = function (this: ProxyConnection, line: string) {
    if (this.proxy.allowed && /^UNKNOWN(?: |\r?\n?$)/.test(String(line))) return this.apply_proxy(ownAddresses(this))
    return cmdProxy.call(this, line)
  }
  // v2: a binary header before the greeting. Read it here, before Haraka splits the bytes into lines.
  const processData = proto._process_data
  proto._process_data = function (this: ProxyConnection) {
    const data = this.current_data
    if (data === null || data.length === 0 || data[0] !== 0x0d) return processData.call(this)
    const v2 = parseProxyV2(data)
    if (v2.kind === 'none') return processData.call(this)
    if (!this.proxy.allowed) {
      this.current_data = null
      this.respond(421, `PROXY not allowed from ${this.remote.ip}`, () => this.disconnect())
      return undefined
    }
    if (v2.kind === 'incomplete') return undefined
    if (v2.kind === 'invalid') {
      this.current_data = null
      log.info({ ip: this.remote.ip, why: v2.why }, 'invalid PROXY v2 header')
      this.respond(421, `Invalid PROXY v2 header: ${v2.why}`, () => this.disconnect())
      return undefined
    }
    if (this.proxy.timer) clearTimeout(this.proxy.timer)
    this.proxy.timer = null
    this.state = constants.connection.state.CMD
    this.current_data = data.length > v2.length ? data.subarray(v2.length) : null
    this.apply_proxy(v2.kind === 'local' ? ownAddresses(this) : v2.addresses)
    return undefined
  }
}
