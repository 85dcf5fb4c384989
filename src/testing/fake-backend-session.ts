// One SMTP connection of the fake backend: the command state machine, fault application, and DATA decoding.
import type net from 'node:net'
import tls from 'node:tls'
import { type FaultRule, type FaultStage, formatReply, replyCode } from './fault-rules'

export interface ReceivedMessage {
  /** The Message-ID header's value without angle brackets, or null when the message has none. */
  messageId: string | null
  from: string
  to: string[]
  /** The message as the client sent it, un-dot-stuffed, CRLF kept, without the terminating "." line. */
  raw: Buffer
  /** The DATA bytes exactly as they came off the wire (dot-stuffing kept), without the terminating "." line. */
  wire: Buffer
  size: number
  at: number
  sessionId: string
  /** The message came over a session secured with STARTTLS. */
  tls: boolean
}

/** What a session needs from its server, so the session knows nothing of the listener. */
export interface SessionHost {
  readonly hostname: string
  readonly pipelining: boolean
  readonly smtputf8: boolean
  readonly acceptDelayMs: number
  /** Offer STARTTLS with this certificate; null = not offered (STARTTLS gets 502). */
  readonly tls: tls.SecureContext | null
  /** Picks the fault for this stage (or null), counting and announcing it. */
  fault(stage: FaultStage, sessionId: string, extra?: { rcpt?: string; messageId?: string | null }): FaultRule | null
  greeted(): void
  /** A well-formed MAIL FROM began a transaction (before any fault applies to it). */
  mailStarted(sessionId: string): void
  /** A well-formed RCPT TO inside a transaction named this address (before any fault applies to it). */
  rcptSeen(sessionId: string, rcpt: string): void
  finished(kind: 'received' | 'dropped' | 'stalled', msg: ReceivedMessage): void
  later(ms: number, fn: () => void): void
}

const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e
const CRLF = Buffer.from('\r\n')
const EMPTY = Buffer.alloc(0)
const MAX_COMMAND_LINE = 4096

/** Collects DATA bytes, un-dot-stuffing line starts, until the lone "." line; keeps spans uncopied until the end. */
export class DotDecoder {
  private readonly parts: Buffer[] = []
  private size = 0
  private carry: Buffer = EMPTY
  private lineStart = true
  /** Every chunk fed, as received; wireEnd is where the terminating "." line starts in them once it is seen. */
  private readonly wireParts: Buffer[] = []
  private wireSize = 0
  private wireEnd = -1

  /** Returns the bytes that followed the terminating ".\r\n" once it is seen (pipelined commands), else null. */
  feed(chunk: Buffer): Buffer | null {
    const buf = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk
    this.carry = EMPTY
    this.wireParts.push(chunk)
    this.wireSize += chunk.length
    let pos = 0
    let spanStart = 0
    while (pos < buf.length) {
      if (this.lineStart) {
        if (buf[pos] === DOT) {
          if (buf.length - pos < 3) {
            // Cannot tell "." CRLF from a stuffed line yet: wait for more bytes.
            this.take(buf, spanStart, pos)
            this.carry = buf.subarray(pos)
            return null
          }
          this.take(buf, spanStart, pos)
          if (buf[pos + 1] === CR && buf[pos + 2] === LF) {
            // buf ends where the chunks fed so far end, so pos maps to this offset in them.
            this.wireEnd = this.wireSize - buf.length + pos
            return buf.subarray(pos + 3)
          }
          pos += 1 // drop the stuffing dot
          spanStart = pos
        }
        this.lineStart = false
      }
      const eol = buf.indexOf(CRLF, pos)
      if (eol === -1) {
        // A trailing CR may pair with an LF in the next chunk: hold it back.
        const end = buf[buf.length - 1] === CR ? buf.length - 1 : buf.length
        this.take(buf, spanStart, end)
        this.carry = buf.subarray(end)
        return null
      }
      pos = eol + 2
      this.lineStart = true
    }
    this.take(buf, spanStart, buf.length)
    return null
  }

  message(): Buffer {
    return Buffer.concat(this.parts, this.size)
  }

  /** The DATA bytes as fed, dot-stuffing kept, up to the terminating "." line (all of them before it is seen). */
  wire(): Buffer {
    const all = Buffer.concat(this.wireParts, this.wireSize)
    return this.wireEnd === -1 ? all : all.subarray(0, this.wireEnd)
  }

  private take(buf: Buffer, from: number, to: number): void {
    if (to > from) {
      this.parts.push(buf.subarray(from, to))
      this.size += to - from
    }
  }
}

/** The Message-ID header's value (unfolded, without angle brackets) from the header block, or null. */
export function extractMessageId(raw: Buffer): string | null {
  const end = raw.indexOf('\r\n\r\n')
  const header = raw.subarray(0, end === -1 ? raw.length : end + 2).toString('latin1')
  const m = /^message-id:[ \t]*(.*(?:\r\n[ \t].*)*)/im.exec(header)
  if (!m?.[1]) return null
  const value = m[1].replace(/\r\n[ \t]+/g, ' ').trim()
  const bracketed = /^<([^>]*)>/.exec(value)
  return bracketed?.[1] ?? (value || null)
}

type SessionState = 'command' | 'data' | 'rejected' | 'stalled' | 'closed'

/** One SMTP connection. Input is handled strictly in order; `busy` holds later pipelined commands back. */
export class Session {
  private state: SessionState = 'command'
  private greeted = false
  private busy = false
  private input: Buffer = EMPTY
  private tx: { from: string; to: string[] } | null = null
  private decoder: DotDecoder | null = null
  private corked = false
  private secured = false

  constructor(
    private socket: net.Socket,
    private readonly sessionId: string,
    private readonly host: SessionHost,
  ) {}

  begin(): void {
    this.listen()
    const rule = this.host.fault('connect', this.sessionId) ?? this.host.fault('banner', this.sessionId)
    if (!rule) {
      this.send(`220 ${this.host.hostname} ESMTP fake backend ready`)
      return
    }
    if (rule.action === 'reset' || rule.action === 'refuse') {
      this.state = 'closed'
      this.socket.resetAndDestroy()
      return
    }
    // A 2xx banner reply is a custom greeting. After a 4xx/5xx one (421 has closed already) the server refuses every
    // command but QUIT, as RFC 5321 §3.1 asks after a 554 greeting.
    if (this.refusedBy(rule)) this.state = 'rejected'
  }

  private listen(): void {
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk))
    this.socket.on('close', () => {
      this.state = 'closed'
    })
  }

  /** RFC 3207: 220, then the handshake; plain text pipelined behind STARTTLS is dropped, the client says EHLO again. */
  private starttls(arg: string): void {
    if (this.host.tls === null || this.secured) {
      this.send('502 5.5.1 STARTTLS not implemented')
      return
    }
    if (arg !== '') {
      this.send('501 5.5.4 Syntax: STARTTLS')
      return
    }
    this.send('220 2.0.0 Ready to start TLS')
    this.input = EMPTY
    this.socket.removeAllListeners('data')
    const secure = new tls.TLSSocket(this.socket, { isServer: true, secureContext: this.host.tls })
    secure.on('error', () => secure.destroy())
    this.socket = secure
    this.secured = true
    this.greeted = false
    this.tx = null
    this.listen()
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'stalled' || this.state === 'closed') return
    this.input = this.input.length > 0 ? Buffer.concat([this.input, chunk]) : chunk
    this.pump()
  }

  /** Handles whatever complete input is buffered; replies are corked so a pipelined group goes out in one write. */
  private pump(): void {
    this.cork()
    while (!this.busy && this.input.length > 0) {
      if (this.state === 'data') {
        const rest = this.decoder!.feed(this.input)
        this.input = rest ?? EMPTY
        if (rest !== null) this.endOfData()
        continue
      }
      if (this.state !== 'command' && this.state !== 'rejected') {
        this.input = EMPTY
        break
      }
      const lf = this.input.indexOf(LF)
      if (lf === -1) {
        if (this.input.length > MAX_COMMAND_LINE) {
          this.send('500 5.5.6 Command line too long')
          this.close()
        }
        break
      }
      const line = this.input.subarray(0, lf).toString('latin1').replace(/\r$/, '')
      this.input = this.input.subarray(lf + 1)
      this.command(line)
    }
  }

  private command(line: string): void {
    const verb = (/^\S*/.exec(line)?.[0] ?? '').toUpperCase()
    const arg = line.slice(verb.length).trim()
    if (this.state === 'rejected') {
      if (verb === 'QUIT') this.quit()
      else this.send('503 5.5.1 Bad sequence of commands: this server refused the session, send QUIT')
      return
    }
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        this.ehlo(verb, arg)
        break
      case 'MAIL':
        this.mail(arg)
        break
      case 'RCPT':
        this.rcpt(arg)
        break
      case 'DATA':
        this.data()
        break
      case 'RSET':
        this.tx = null
        this.send('250 2.0.0 Ok')
        break
      case 'NOOP':
        this.send('250 2.0.0 Ok')
        break
      case 'QUIT':
        this.quit()
        break
      case 'VRFY':
        this.send('252 2.5.2 Cannot VRFY user, but will accept message')
        break
      case 'STARTTLS':
        this.starttls(arg)
        break
      case 'BDAT':
      case 'AUTH':
        this.send(`502 5.5.1 ${verb} not implemented`)
        break
      default:
        this.send('500 5.5.2 Command not recognized')
    }
  }

  private ehlo(verb: string, arg: string): void {
    if (!arg) {
      this.send(`501 5.5.4 Syntax: ${verb} hostname`)
      return
    }
    const rule = this.host.fault('ehlo', this.sessionId)
    if (rule && this.refusedBy(rule)) return
    this.tx = null
    if (!this.greeted) this.host.greeted()
    this.greeted = true
    if (rule) return
    if (verb === 'HELO') {
      this.send(`250 ${this.host.hostname}`)
      return
    }
    const lines = [`${this.host.hostname} Hello ${arg}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']
    if (!this.host.smtputf8) lines.splice(2, 1)
    if (this.host.pipelining) lines.splice(1, 0, 'PIPELINING')
    if (this.host.tls !== null && !this.secured) lines.splice(1, 0, 'STARTTLS')
    this.send(lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}`).join('\r\n'))
  }

  private mail(arg: string): void {
    const m = /^FROM:\s*<((?:"(?:[^"\\]|\\.)*"|[^>"])*)>/i.exec(arg)
    if (!this.greeted) this.send('503 5.5.1 Send EHLO or HELO first')
    else if (this.tx) this.send('503 5.5.1 Nested MAIL command')
    else if (!m) this.send('501 5.5.4 Syntax: MAIL FROM:<address>')
    else {
      this.host.mailStarted(this.sessionId)
      const rule = this.host.fault('mail', this.sessionId)
      if (rule && this.refusedBy(rule)) return
      this.tx = { from: m[1] ?? '', to: [] }
      if (!rule) this.send('250 2.1.0 Ok')
    }
  }

  private rcpt(arg: string): void {
    // A quoted local part may hold '>' (RFC 5321 §4.1.2 qtextSMTP): the path ends at the first '>' outside quotes.
    const rcpt = /^TO:\s*<((?:"(?:[^"\\]|\\.)*"|[^>"])+)>/i.exec(arg)?.[1]
    if (!this.tx) this.send('503 5.5.1 Need MAIL before RCPT')
    else if (!rcpt) this.send('501 5.5.4 Syntax: RCPT TO:<address>')
    else {
      this.host.rcptSeen(this.sessionId, rcpt)
      const rule = this.host.fault('rcpt', this.sessionId, { rcpt })
      if (rule && this.refusedBy(rule)) return
      this.tx.to.push(rcpt)
      if (!rule) this.send('250 2.1.5 Ok')
    }
  }

  private data(): void {
    if (!this.tx) this.send('503 5.5.1 Need MAIL before DATA')
    else if (this.tx.to.length === 0) this.send('554 5.5.1 No valid recipients')
    else {
      const rule = this.host.fault('data', this.sessionId)
      if (rule && this.refusedBy(rule)) return
      this.state = 'data'
      this.decoder = new DotDecoder()
      if (!rule) this.send('354 End data with <CR><LF>.<CR><LF>')
    }
  }

  private endOfData(): void {
    const tx = this.tx!
    const raw = this.decoder!.message()
    const wire = this.decoder!.wire()
    this.tx = null
    this.decoder = null
    this.state = 'command'
    const msg: ReceivedMessage = {
      messageId: extractMessageId(raw),
      from: tx.from,
      to: tx.to,
      raw,
      wire,
      size: raw.length,
      at: Date.now(),
      sessionId: this.sessionId,
      tls: this.secured,
    }
    const rule = this.host.fault('dot', this.sessionId, { messageId: msg.messageId })
    if (rule?.action === 'drop') this.host.finished('dropped', msg)
    if (rule?.action === 'stall') this.host.finished('stalled', msg)
    if (rule && this.refusedBy(rule)) return
    const accept = (): void => {
      msg.at = Date.now()
      this.host.finished('received', msg)
      if (!rule) this.send(`250 2.0.0 Ok: queued as ${this.sessionId}-${msg.at}`)
    }
    if (rule || this.host.acceptDelayMs <= 0) {
      accept()
      return
    }
    // Hold this reply and every later pipelined command until the delay is over.
    this.busy = true
    this.host.later(this.host.acceptDelayMs, () => {
      this.busy = false
      if (this.state === 'closed') {
        this.host.finished('dropped', msg)
        return
      }
      accept()
      this.pump()
    })
  }

  /**
   * Applies a fault at the current stage. True when the command must not go on: stalled, dropped, closed by 421, or
   * answered with a 4xx/5xx reply. False after a 2xx/3xx reply: the command proceeds, with that reply already sent.
   */
  private refusedBy(rule: FaultRule): boolean {
    switch (rule.action) {
      case 'stall':
        this.state = 'stalled'
        this.input = EMPTY
        return true
      case 'drop':
      case 'reset':
      case 'refuse':
        this.close()
        return true
      case 'reply': {
        const reply = rule.reply ?? '451 4.3.0 Temporary failure'
        this.send(formatReply(reply).replace(/\r\n$/, ''))
        if (replyCode(reply) === 421) this.close()
        return replyCode(reply) >= 400
      }
    }
  }

  private quit(): void {
    this.send('221 2.0.0 Bye')
    this.close()
  }

  private send(reply: string): void {
    if (this.state === 'closed' || this.socket.destroyed) return
    this.socket.write(`${reply}\r\n`)
  }

  /** Flushes replies already written (earlier pipelined answers), then closes without reading more. */
  private close(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.input = EMPTY
    this.socket.end(() => this.socket.destroy())
  }

  private cork(): void {
    if (this.corked) return
    this.corked = true
    // The socket that was corked: STARTTLS replaces this.socket before the tick.
    const socket = this.socket
    socket.cork()
    process.nextTick(() => {
      this.corked = false
      socket.uncork()
    })
  }
}
