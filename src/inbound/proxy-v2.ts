// The binary PROXY protocol header, version 2 (haproxy's proxy-protocol.txt §2.2), which Haraka 3.3.4 does not read
// on its plain SMTP listener. Pure: bytes in, addresses out.

/** The 12 bytes every v2 header starts with (they include "QUIT\n", so a server that does not know v2 hangs up). */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

export interface ProxyAddresses {
  proto: 'TCP4' | 'TCP6'
  src_ip: string
  src_port: string
  dst_ip: string
  dst_port: string
}

export type V2Parse =
  /** Not a v2 header: the bytes do not start with the signature. */
  | { kind: 'none' }
  /** The bytes so far are the start of a header: wait for more. */
  | { kind: 'incomplete' }
  | { kind: 'invalid'; why: string }
  /** LOCAL (the balancer's own health check) or an unspecified family: use the connection's own addresses. */
  | { kind: 'local'; length: number }
  | { kind: 'proxy'; length: number; addresses: ProxyAddresses }

function ipv6(b: Buffer, at: number): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(at + i).toString(16))
  return groups.join(':')
}

/** Reads a v2 header at the start of `data`; `length` is the header's whole size in bytes. */
export function parseProxyV2(data: Buffer): V2Parse {
  const n = Math.min(data.length, V2_SIGNATURE.length)
  if (!data.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { kind: 'none' }
  if (data.length < 16) return { kind: 'incomplete' }
  const verCmd = data[12]!
  const famProto = data[13]!
  const length = 16 + data.readUInt16BE(14)
  if (verCmd >> 4 !== 2) return { kind: 'invalid', why: `version ${verCmd >> 4}, not 2` }
  const cmd = verCmd & 0x0f
  if (cmd > 1) return { kind: 'invalid', why: `unknown command ${cmd}` }
  if (data.length < length) return { kind: 'incomplete' }
  if (cmd === 0) return { kind: 'local', length }
  const family = famProto >> 4
  const transport = famProto & 0x0f
  if (family === 0) return { kind: 'local', length }
  if (transport !== 1) return { kind: 'invalid', why: 'not a TCP (stream) connection' }
  if (family === 1) {
    if (length < 16 + 12) return { kind: 'invalid', why: 'an IPv4 address block shorter than 12 bytes' }
    const ip = (at: number) => [...data.subarray(at, at + 4)].join('.')
    return {
      kind: 'proxy',
      length,
      addresses: {
        proto: 'TCP4',
        src_ip: ip(16),
        dst_ip: ip(20),
        src_port: String(data.readUInt16BE(24)),
        dst_port: String(data.readUInt16BE(26)),
      },
    }
  }
  if (family === 2) {
    if (length < 16 + 36) return { kind: 'invalid', why: 'an IPv6 address block shorter than 36 bytes' }
    return {
      kind: 'proxy',
      length,
      addresses: {
        proto: 'TCP6',
        src_ip: ipv6(data, 16),
        dst_ip: ipv6(data, 32),
        src_port: String(data.readUInt16BE(48)),
        dst_port: String(data.readUInt16BE(50)),
      },
    }
  }
  return { kind: 'invalid', why: `address family ${family} (only IPv4 and IPv6)` }
}
