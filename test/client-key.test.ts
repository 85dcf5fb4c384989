// Per-client limits count an IPv6 client by its /64, an IPv4 one by its address (src/inbound/client-key.ts).
import net from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { clientKey } from '../src/inbound/client-key'
import { ConnectionGate } from '../src/inbound/limits'
import { holds } from './property/check'

t.test('the key of an address', async (t) => {
  const cases: Array<[string, string]> = [
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::FFFF:192.0.2.7', '192.0.2.7'],
    // IPv4-mapped in hex, as a PROXY v2 header from a dual-stack load balancer writes it.
    ['0:0:0:0:0:ffff:c000:207', '192.0.2.7'],
    ['::ffff:c000:207', '192.0.2.7'],
    ['64:ff9b::192.0.2.7', '192.0.2.7'],
    ['64:ff9b::c000:207', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::', '2001:db8:1:2::/64'],
    ['2001:DB8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8::/64'],
    ['2001:0:0:1::1', '2001:0:0:1::/64'],
    ['::1', '::/64'],
    ['fe80::1%eth0', 'fe80::/64'],
    ['not an address', 'not an address'],
  ]
  for (const [ip, key] of cases) t.equal(clientKey(ip), key, ip)
})

/** Four groups of an IPv6 address, as hex text. */
const four = fc.array(
  fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16)),
  { minLength: 4, maxLength: 4 },
)

t.test('every address of one /64 has the same key', async (t) => {
  holds(
    t,
    __filename,
    fc.property(four, four, four, (prefix, a, b) => {
      fc.pre(!isEmbedded(prefix))
      const x = clientKey([...prefix, ...a].join(':'))
      // The /64's own address, in RFC 5952 form: its four zero groups at the end are the `::`.
      return x === clientKey([...prefix, ...b].join(':')) && x.endsWith('::/64') && net.isIPv6(x.slice(0, -3))
    }),
  )
})

/** ::/64 (with ::ffff:0:0/96) and 64:ff9b::/64 (with 64:ff9b::/96) may hold an IPv4 address: keyed by it instead. */
function isEmbedded(prefix: string[]): boolean {
  const p = prefix.map((g) => Number.parseInt(g, 16)).join(':')
  return p === '0:0:0:0' || p === '100:65435:0:0'
}

t.test('addresses in two different /64s have different keys', async (t) => {
  holds(
    t,
    __filename,
    fc.property(four, four, four, (p, q, rest) => {
      fc.pre(p.join(':') !== q.join(':') && !isEmbedded(p) && !isEmbedded(q))
      return clientKey([...p, ...rest].join(':')) !== clientKey([...q, ...rest].join(':'))
    }),
  )
})

t.test('the connection limit per client holds for a /64 that changes its address on every connection', async (t) => {
  const gate = new ConnectionGate({ maxConnections: 100, maxConnectionsPerIp: 3 })
  const refusals = Array.from({ length: 5 }, (_, i) => gate.open(clientKey(`2001:db8:1:2::${i + 1}`)))
  t.same(refusals, [null, null, null, 'per-ip', 'per-ip'])
  t.equal(gate.open(clientKey('2001:db8:1:3::1')), null, 'the next /64 is another client')
})
