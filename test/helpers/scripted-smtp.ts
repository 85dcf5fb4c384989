// A tiny raw-`net` SMTP server whose every reply a test can script: banner, per-command replies, the reply to the
// final dot, or no reply at all / a close / a reset. It records the exact bytes it received per connection.
import net from 'node:net'

/** Close the connection without replying (FIN). */
export const CLOSE = 'CLOSE'
/** Reset the connection (RST) without replying. */
export const RESET = 'RESET'
/** Never reply; keep the connection open. */
export const STALL = 'STALL'

/** A reply ("250 2.1.0 Ok", multi-line joined with CRLF), a reply then close, or one of CLOSE, RESET, STALL. */
export type Action = string | { reply: string; close: true }

export interface ScriptedConnection {
  index: number
  /** Command lines received, without CRLF. */
  commands: string[]
  /** Message bodies as received, without the terminating ".\r\n". */
  messages: Buffer[]
  /** Every byte received, in order. */
  received: Buffer[]
  /** A command arrived before the reply to the previous one was sent: the client pipelined. */
  sentAhead: boolean
  closed: boolean
  socket: net.Socket
}

export interface Script {
  /** Greeting; default "220 scripted.test ESMTP". */
  banner?: (conn: ScriptedConnection) => Action
  /** EHLO keywords after the greeting line; default PIPELINING, SIZE, 8BITMIME, SMTPUTF8. */
  extensions?: string[]
  /** Reply to one command line; return undefined for the default reply. */
  command?: (line: string, conn: ScriptedConnection) => Action | undefined
  /** Reply to the final dot; return undefined for "250 2.0.0 queued". */
  message?: (body: Buffer, conn: ScriptedConnection) => Action | undefined
  /** Hold every reply until DATA arrives: a client that does not pipeline then never gets its MAIL reply. */
  holdRepliesUntilData?: boolean
  /** Keep commands, bodies and bytes (default true); off for throughput runs. */
  record?: boolean
}

const DEFAULT_EXTENSIONS = ['PIPELINING', 'SIZE 10485760', '8BITMIME', 'SMTPUTF8']
const END_OF_DATA = Buffer.from('\r\n.\r\n')

export class ScriptedSmtp {
  readonly connections: ScriptedConnection[] = []
  /** Messages fully received (counted even when record is off). */
  messageCount = 0
  private readonly sockets = new Set<net.Socket>()

  private constructor(
    private readonly server: net.Server,
    private readonly script: Script,
  ) {}

  static async start(script: Script = {}): Promise<ScriptedSmtp> {
    const server = net.createServer()
    const smtp = new ScriptedSmtp(server, script)
    server.on('connection', (socket) => smtp.accept(socket))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return smtp
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }

  get openConnections(): number {
    return this.sockets.size
  }

  /** Poll until cond() holds; throws naming `what` after timeoutMs. */
  async waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs
    while (!cond()) {
      if (Date.now() > until) throw new Error(`scripted SMTP server: timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(socket: net.Socket): void {
    const record = this.script.record !== false
    const conn: ScriptedConnection = {
      index: this.connections.length,
      commands: [],
      messages: [],
      received: [],
      sentAhead: false,
      closed: false,
      socket,
    }
    if (record) this.connections.push(conn)
    this.sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('error', () => {})
    socket.on('close', () => {
      conn.closed = true
      this.sockets.delete(socket)
    })

    let buf: Buffer = Buffer.alloc(0)
    let inData = false
    let rcptOk = 0
    let held: string[] = []
    let stalled = false

    const act = (action: Action): void => {
      if (action === STALL) {
        stalled = true
        return
      }
      if (action === CLOSE) return void socket.end()
      if (action === RESET) return void socket.resetAndDestroy()
      socket.write(`${typeof action === 'string' ? action : action.reply}\r\n`)
      if (typeof action !== 'string') socket.end()
    }

    const defaultReply = (verb: string): string => {
      switch (verb) {
        case 'EHLO': {
          const ext = this.script.extensions ?? DEFAULT_EXTENSIONS
          return ['scripted.test', ...ext].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${l}`).join('\r\n')
        }
        case 'HELO':
          return '250 scripted.test'
        case 'MAIL':
          return '250 2.1.0 Ok'
        case 'RCPT':
          return '250 2.1.5 Ok'
        case 'DATA':
          return rcptOk > 0 ? '354 End data with <CR><LF>.<CR><LF>' : '554 5.5.1 No valid recipients'
        case 'RSET':
        case 'NOOP':
          return '250 2.0.0 Ok'
        case 'QUIT':
          return '221 2.0.0 Bye'
        default:
          return '502 5.5.2 Command not recognized'
      }
    }

    const onCommand = (line: string): void => {
      if (record) conn.commands.push(line)
      const verb = line.slice(0, 4).toUpperCase()
      const action = this.script.command?.(line, conn) ?? defaultReply(verb)
      const text = typeof action === 'string' ? action : action.reply
      if (verb === 'MAIL' || verb === 'RSET') rcptOk = 0
      if (verb === 'RCPT' && text.startsWith('2')) rcptOk++
      if (verb === 'DATA' && held.length > 0) {
        socket.write(`${held.join('')}${text}\r\n`)
        held = []
      } else if (
        this.script.holdRepliesUntilData &&
        (verb === 'MAIL' || verb === 'RCPT') &&
        typeof action === 'string'
      ) {
        held.push(`${text}\r\n`)
        return
      } else {
        act(action)
      }
      if (verb === 'DATA') inData = text.startsWith('354')
      if (verb === 'QUIT' && text.startsWith('221')) socket.end()
    }

    const onMessage = (body: Buffer): void => {
      this.messageCount++
      rcptOk = 0
      if (record) conn.messages.push(Buffer.from(body))
      act(this.script.message?.(body, conn) ?? '250 2.0.0 queued')
    }

    const drain = (): void => {
      while (!stalled && buf.length > 0) {
        if (inData) {
          const end = buf[0] === 46 && buf[1] === 13 && buf[2] === 10 ? -2 : buf.indexOf(END_OF_DATA)
          if (end === -1) return
          const body = end === -2 ? buf.subarray(0, 0) : buf.subarray(0, end + 2)
          buf = buf.subarray(end === -2 ? 3 : end + 5)
          inData = false
          onMessage(body)
          continue
        }
        const lf = buf.indexOf('\r\n')
        if (lf === -1) return
        const line = buf.toString('utf8', 0, lf)
        buf = buf.subarray(lf + 2)
        if (buf.length > 0) conn.sentAhead = true
        onCommand(line)
      }
    }

    socket.on('data', (chunk: Buffer) => {
      if (record) conn.received.push(chunk)
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      drain()
    })
    act(this.script.banner?.(conn) ?? '220 scripted.test ESMTP')
  }
}

/** All bytes a connection received, as one string (latin1, so 8-bit bytes survive a comparison). */
export function receivedText(conn: ScriptedConnection | undefined): string {
  return conn ? Buffer.concat(conn.received).toString('latin1') : ''
}
