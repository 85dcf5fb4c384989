// Which client a connection counts against for per-client limits (connections, the harvest guard). Pure.
//
// An IPv4 address is one client. An IPv6 host is given a whole /64 (RFC 6177's smallest end-site assignment) and can
// pick any address in it, one per connection if it likes: counted per address, a per-client limit would mean
// nothing. So an IPv6 client is its /64. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address.
import net from 'node:net'

/** The key for per-client limits: the IPv4 address, or the IPv6 address's /64 as `a:b:c:d::/64`. */
export function clientKey(ip: string): string {
  const v4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip)
  if (v4) return v4[1]!
  if (net.isIPv6(ip)) {
    const groups = expandIPv6(ip)
    if (groups !== null) return `${groups.slice(0, 4).join(':')}::/64`
  }
  return ip
}

/** The eight 16-bit groups of an IPv6 address, without leading zeros; null if it does not parse. */
function expandIPv6(ip: string): string[] | null {
  let text = ip.replace(/%.*$/, '') // a zone index names an interface, not an address
  // A trailing dotted quad is the last two groups.
  const quad = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const missing = 8 - left.length - right.length
  if (missing < 0 || (tail === undefined && missing !== 0)) return null
  const groups = [...left, ...Array<string>(missing).fill('0'), ...right]
  return groups.map((g) => Number.parseInt(g, 16).toString(16))
}
