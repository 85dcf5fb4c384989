// Prebuilt wire bytes for the load generator: built once per run so a message costs one write, not a format.

export const BENCH_FROM = 'loadgen@sender.bench.example'
export const BENCH_TO = 'rcpt@bench.example'
export const BENCH_EHLO = 'loadgen.bench.example'

const LINE = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.'

/**
 * A message of exactly `bytes` bytes in SMTP wire form (CRLF lines, no line starts with '.'), followed by the
 * terminating ".\r\n" (not counted in `bytes`). The headers are fixed: every message of a run is the same bytes.
 */
export function buildMessageWire(bytes: number): Buffer {
  const head =
    `From: Load Generator <${BENCH_FROM}>\r\n` +
    `To: <${BENCH_TO}>\r\n` +
    'Subject: mxgate benchmark message\r\n' +
    'Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n' +
    'Message-ID: <bench-fixed@sender.bench.example>\r\n' +
    'MIME-Version: 1.0\r\n' +
    'Content-Type: text/plain; charset=us-ascii\r\n' +
    '\r\n'
  if (bytes < head.length + 2)
    throw new RangeError(`message size ${bytes} is below the ${head.length + 2} header bytes`)
  const parts: string[] = [head]
  let left = bytes - head.length
  let i = 0
  while (left > 0) {
    // Lines of at most 78 chars + CRLF; never leave a 1-byte remainder, which could not end in CRLF.
    const take = left <= 80 ? left : left === 81 ? 79 : 80
    parts.push(`${`${i % 10} ${LINE}`.slice(0, take - 2).padEnd(take - 2, 'x')}\r\n`)
    left -= take
    i++
  }
  const body = parts.join('')
  return Buffer.from(`${body}.\r\n`, 'latin1')
}

export interface CommandBuffers {
  ehlo: Buffer
  mail: Buffer
  rcpt: Buffer
  data: Buffer
  /** MAIL, RCPT and DATA in one write, for servers that advertise PIPELINING. */
  pipelined: Buffer
  quit: Buffer
}

/** `to`: the recipient (default BENCH_TO, the same for every message). */
export function buildCommands(to = BENCH_TO): CommandBuffers {
  const mail = `MAIL FROM:<${BENCH_FROM}>\r\n`
  const rcpt = `RCPT TO:<${to}>\r\n`
  const data = 'DATA\r\n'
  return {
    ehlo: Buffer.from(`EHLO ${BENCH_EHLO}\r\n`),
    mail: Buffer.from(mail),
    rcpt: Buffer.from(rcpt),
    data: Buffer.from(data),
    pipelined: Buffer.from(mail + rcpt + data),
    quit: Buffer.from('QUIT\r\n'),
  }
}
