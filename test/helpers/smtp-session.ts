// One SMTP connection held open across commands and messages, for tests that watch a connection's whole life
// (a shutdown, a PROXY header before the banner): every reply is read whole, a closed connection is reported, not
// thrown at random.
import net from 'node:net'

export class SessionClosedError extends Error {
  readonly code = 'ESESSIONCLOSED'
  constructor(readonly replies: string[]) {
    super(`connection closed by the server; replies so far: ${replies.join(' | ')}`)
    this.name = 'SessionClosedError'
  }
}

const REPLY_WAIT_MS = 20_000

export class SmtpSession {
  private buffered = ''
  private lines: string[] = []
  private readonly replies: string[] = []
  readonly seen: string[] = []
  private wake: (() => void) | null = null
  closed = false

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      this.buffered += chunk
      for (let eol = this.buffered.indexOf('\r\n'); eol !== -1; eol = this.buffered.indexOf('\r\n')) {
        const line = this.buffered.slice(0, eol)
        this.buffered = this.buffered.slice(eol + 2)
        this.lines.push(line)
        if (line[3] !== '-') {
          this.replies.push(this.lines.join('\n'))
          this.lines = []
        }
      }
      this.wake?.()
    })
    const end = () => {
      this.closed = true
      this.wake?.()
    }
    socket.on('error', end)
    socket.on('close', end)
  }

  /**
   * Connects (from the loopback address `from`, default 127.0.0.1); `preamble` (a PROXY header) goes out before the
   * banner is read. Resolves after the banner.
   */
  static async open(
    port: number,
    opts: { preamble?: Buffer | string; from?: string } = {},
  ): Promise<{ session: SmtpSession; banner: string }> {
    const session = await SmtpSession.connect(port, opts.from)
    if (opts.preamble !== undefined) session.write(opts.preamble)
    return { session, banner: await session.next() }
  }

  /** Connects without reading anything (from the loopback address `from`, default 127.0.0.1). */
  static async connect(port: number, from = '127.0.0.1'): Promise<SmtpSession> {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new SmtpSession(socket)
  }

  /** The next whole reply; SessionClosedError when the connection ends first. */
  async next(): Promise<string> {
    const until = Date.now() + REPLY_WAIT_MS
    while (this.replies.length === 0) {
      if (this.closed) throw new SessionClosedError(this.seen)
      const left = until - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for a reply; replies so far: ${this.seen.join(' | ')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = null
    }
    const reply = this.replies.shift()!
    this.seen.push(reply)
    return reply
  }

  async command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`)
    return this.next()
  }

  write(data: Buffer | string): void {
    this.socket.write(data)
  }

  end(): void {
    this.socket.destroy()
  }
}

/** True when a new connection to the port is refused (the listener is closed). */
export function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}
