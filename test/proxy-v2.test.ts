// The PROXY v2 header parser: whole, partial, LOCAL, IPv6, and the refusals.
import t from 'tap'
import { clientKey } from '../src/inbound/client-key'
import { parseProxyV2, V2_SIGNATURE } from '../src/inbound/proxy-v2'

const header = (verCmd: number, famProto: number, addr: Buffer) => {
  const len = Buffer.alloc(2)
  len.writeUInt16BE(addr.length)
  return Buffer.concat([V2_SIGNATURE, Buffer.from([verCmd, famProto]), len, addr])
}

t.test('parses IPv4 and IPv6 headers; waits for the rest of a partial one', async (t) => {
  const v4 = header(0x21, 0x11, Buffer.from([192, 0, 2, 1, 10, 0, 0, 5, 0x9c, 0x40, 0, 25]))
  t.same(parseProxyV2(Buffer.concat([v4, Buffer.from('EHLO x\r\n')])), {
    kind: 'proxy',
    length: 28,
    addresses: { proto: 'TCP4', src_ip: '192.0.2.1', dst_ip: '10.0.0.5', src_port: '40000', dst_port: '25' },
  })
  for (const n of [1, 11, 12, 15, 20, 27]) t.same(parseProxyV2(v4.subarray(0, n)), { kind: 'incomplete' }, `${n} bytes`)
  const a6 = Buffer.alloc(36)
  a6.writeUInt16BE(0x2001, 0)
  a6.writeUInt16BE(0xdb8, 2)
  a6.writeUInt16BE(1, 14)
  a6.writeUInt16BE(0xfd00, 16)
  a6.writeUInt16BE(2, 30)
  a6.writeUInt16BE(1234, 32)
  a6.writeUInt16BE(25, 34)
  t.same(parseProxyV2(header(0x21, 0x21, a6)), {
    kind: 'proxy',
    length: 52,
    addresses: {
      proto: 'TCP6',
      src_ip: '2001:db8:0:0:0:0:0:1',
      dst_ip: 'fd00:0:0:0:0:0:0:2',
      src_port: '1234',
      dst_port: '25',
    },
  })
  t.same(parseProxyV2(header(0x20, 0x00, Buffer.alloc(0))), { kind: 'local', length: 16 }, 'LOCAL')
  t.same(parseProxyV2(header(0x21, 0x00, Buffer.alloc(0))), { kind: 'local', length: 16 }, 'UNSPEC family')
  t.same(parseProxyV2(Buffer.from('EHLO x\r\n')), { kind: 'none' })
  t.same(parseProxyV2(Buffer.from('\r\n')), { kind: 'incomplete' }, 'the first bytes of the signature')
})

t.test('refuses what it cannot use', async (t) => {
  const addr = Buffer.alloc(12)
  t.same(parseProxyV2(header(0x11, 0x11, addr)), { kind: 'invalid', why: 'version 1, not 2' })
  t.same(parseProxyV2(header(0x22, 0x11, addr)), { kind: 'invalid', why: 'unknown command 2' })
  t.same(parseProxyV2(header(0x21, 0x12, addr)), { kind: 'invalid', why: 'not a TCP (stream) connection' })
  t.same(parseProxyV2(header(0x21, 0x31, addr)), { kind: 'invalid', why: 'address family 3 (only IPv4 and IPv6)' })
  t.same(parseProxyV2(header(0x21, 0x11, Buffer.alloc(4))), {
    kind: 'invalid',
    why: 'an IPv4 address block shorter than 12 bytes',
  })
})

t.test('an IPv4-mapped source from a dual-stack load balancer counts as that IPv4 client', async (t) => {
  const a6 = Buffer.alloc(36)
  a6.writeUInt16BE(0xffff, 10)
  Buffer.from([192, 0, 2, 7]).copy(a6, 12)
  a6.writeUInt16BE(0xffff, 26)
  Buffer.from([10, 0, 0, 5]).copy(a6, 28)
  a6.writeUInt16BE(40000, 32)
  a6.writeUInt16BE(25, 34)
  const parsed = parseProxyV2(header(0x21, 0x21, a6))
  t.equal(parsed.kind, 'proxy')
  const src = parsed.kind === 'proxy' ? parsed.addresses.src_ip : ''
  t.equal(src, '0:0:0:0:0:ffff:c000:207', 'the header writes it in hex')
  t.equal(clientKey(src), '192.0.2.7', 'its own client, not every mapped sender in one ::/64')
})
