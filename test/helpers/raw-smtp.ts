// A raw-socket SMTP client for byte-exact tests: the DATA bytes go out exactly as given (no dot-stuffing, no line
// ending repair), so a test controls every byte the server sees.
import net from 'node:net'

export interface RawSendOptions {
  port: number
  from: string
  to: string[]
  /** The DATA section in wire form (already dot-stuffed, CRLF lines), without the final ".\r\n". */
  data: Buffer
  timeoutMs?: number
}

/** Sends one message over a new connection; resolves the reply to the final dot. Throws on any other surprise. */
export async function sendRawMessage(opts: RawSendOptions): Promise<string> {
  const socket = net.connect(opts.port, '127.0.0.1')
  socket.setNoDelay(true)
  const timeoutMs = opts.timeoutMs ?? 20_000
  let buffered = ''
  let lines: string[] = []
  const replies: string[] = []
  let wake: (() => void) | null = null
  let failure: Error | null = null
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    buffered += chunk
    for (let eol = buffered.indexOf('\r\n'); eol !== -1; eol = buffered.indexOf('\r\n')) {
      const line = buffered.slice(0, eol)
      buffered = buffered.slice(eol + 2)
      lines.push(line)
      if (line[3] !== '-') {
        replies.push(lines.join('\n'))
        lines = []
      }
    }
    wake?.()
  })
  socket.on('error', (err) => {
    failure = err
    wake?.()
  })
  socket.on('close', () => wake?.())
  const seen: string[] = []
  const next = async (): Promise<string> => {
    const until = Date.now() + timeoutMs
    while (replies.length === 0) {
      if (failure !== null || socket.destroyed) throw new Error(`connection ended; replies so far: ${seen.join(' | ')}`)
      const left = until - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for a reply; replies so far: ${seen.join(' | ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      wake = null
    }
    const reply = replies.shift()!
    seen.push(reply)
    return reply
  }
  const expect = async (code: number): Promise<void> => {
    const reply = await next()
    if (!reply.startsWith(String(code))) throw new Error(`expected ${code}, got: ${seen.join(' | ')}`)
  }
  try {
    await expect(220)
    socket.write('EHLO sender.mxgate.test\r\n')
    await expect(250)
    socket.write(`MAIL FROM:<${opts.from}>\r\n`)
    await expect(250)
    for (const rcpt of opts.to) {
      socket.write(`RCPT TO:<${rcpt}>\r\n`)
      await expect(250)
    }
    socket.write('DATA\r\n')
    await expect(354)
    socket.write(Buffer.concat([opts.data, Buffer.from('.\r\n')]))
    const reply = await next()
    socket.write('QUIT\r\n')
    return reply
  } finally {
    socket.end()
  }
}
