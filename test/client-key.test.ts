// Per-client limits count an IPv6 client by its /64, an IPv4 one by its address (src/inbound/client-key.ts).
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
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.7', '64:ff9b:0:0::/64'],
    ['not an address', 'not an address'],
  ]
  for (const [ip, key] of cases) t.equal(clientKey(ip), key, ip)
})

t.test('every address of one /64 has the same key', async (t) => {
  const group = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16))
  const four = fc.array(group, { minLength: 4, maxLength: 4 })
  holds(
    t,
    __filename,
    fc.property(four, four, four, (prefix, a, b) => {
      const x = clientKey([...prefix, ...a].join(':'))
      return x === clientKey([...prefix, ...b].join(':')) && x === `${prefix.join(':')}::/64`
    }),
  )
})

t.test('addresses in two different /64s have different keys', async (t) => {
  const group = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16))
  const four = fc.array(group, { minLength: 4, maxLength: 4 })
  holds(
    t,
    __filename,
    fc.property(four, four, four, (p, q, rest) => {
      fc.pre(p.join(':') !== q.join(':'))
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
