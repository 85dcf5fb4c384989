// Which client a connection counts against for per-client limits (connections, the harvest guard). Pure.
//
// An IPv4 address is one client. An IPv6 host is given a whole /64 (RFC 6177's smallest end-site assignment) and can
// pick any address in it, one per connection if it likes: counted per address, a per-client limit would mean
// nothing. So an IPv6 client is its /64. An IPv6 address that carries an IPv4 one — IPv4-mapped (::ffff:a.b.c.d,
// in either notation: a PROXY v2 header from a dual-stack load balancer writes it in hex) or translated by NAT64's
// well-known prefix (64:ff9b::/96) — is that IPv4 client.
import net from 'node:net'

/** The key for per-client limits: the IPv4 address, or the IPv6 address's /64 (RFC 5952 form, e.g. `2001:db8::/64`). */
export function clientKey(ip: string): string {
  if (net.isIPv4(ip)) return ip
  const groups = net.isIPv6(ip.replace(/%.*$/, '')) ? expandIPv6(ip) : null
  if (groups === null) return ip
  const embedded = embeddedIPv4(groups)
  if (embedded !== null) return embedded
  return `${compress([...groups.slice(0, 4), 0, 0, 0, 0])}/64`
}

/** The eight 16-bit groups of an IPv6 address; null if it does not parse. */
function expandIPv6(ip: string): number[] | null {
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
  const groups = [...left, ...Array<string>(missing).fill('0'), ...right].map((g) => Number.parseInt(g, 16))
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null
}

/** The IPv4 address inside an IPv4-mapped (::ffff:0:0/96) or NAT64 (64:ff9b::/96) address; else null. */
function embeddedIPv4(g: number[]): string | null {
  const mapped = g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0
  if (!mapped && !nat64) return null
  const hi = g[6]!
  const lo = g[7]!
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
}

/** RFC 5952 text: lower-case hex without leading zeros, the longest run of two or more zero groups as `::`. */
function compress(g: number[]): string {
  let best = { at: -1, len: 0 }
  for (let i = 0; i < g.length; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < g.length && g[j] === 0) j++
    if (j - i > best.len) best = { at: i, len: j - i }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (best.len < 2) return hex.join(':')
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`
}
