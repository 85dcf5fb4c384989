// A small, strict SMTP client for tests and the demo: one new connection per message, never throws, reports where
// the dialogue ended and what the server said there.
import { randomUUID } from 'node:crypto'
import net from 'node:net'

export type SendStage = 'connect' | 'banner' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'dot'

export interface SendOptions {
  host: string
  port: number
  from: string
  to: string[]
  /** A raw RFC 5322 message; bare LF becomes CRLF and lines starting with "." are dot-stuffed here. */
  message: Buffer | string
  /** Default "sender.mxgate.test". */
  helo?: string
  /** Limit on the connect and on each wait for a reply (default 10 s). */
  timeoutMs?: number
  /** Send MAIL, RCPT and DATA as one group when the server advertises PIPELINING (default false). */
  pipelining?: boolean
}

export interface RcptReply {
  rcpt: string
  code: number
  reply: string
}

export interface SendResult {
  /** True when the server answered 2xx after the final dot. */
  ok: boolean
  /** Where the dialogue was decided: 'dot' for a delivered message, else the stage that failed. */
  stage: SendStage
  code: number | null
  /** The last reply in full; multi-line replies keep their lines, joined with "\n". */
  reply: string
  rcptReplies: RcptReply[]
  latencyMs: number
  /** Set when the connection failed rather than the server refusing: refused, reset, closed, timeout. */
  error?: string
}

interface Reply {
  code: number
  text: string
}

/** Why a wait for a reply ended without one. */
class TransportError extends Error {
  constructor(
    readonly code: 'ETIMEDOUT' | 'ECLOSED' | 'ESOCKET',
    message: string,
  ) {
    super(message)
    this.name = 'TransportError'
  }
}

/** Splits the server's byte stream into complete replies, in order. */
class ReplyReader {
  private buffered = ''
  private lines: string[] = []
  private readonly replies: Reply[] = []
  private waiter: ((r: Reply | TransportError) => void) | null = null
  private failure: TransportError | null = null

  constructor(socket: net.Socket) {
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.fail(new TransportError('ESOCKET', `${err.code ?? 'socket error'}: ${err.message}`))
    })
    socket.on('close', () => this.fail(new TransportError('ECLOSED', 'connection closed by the server')))
  }

  next(timeoutMs: number, stage: SendStage): Promise<Reply> {
    const queued = this.replies.shift()
    if (queued) return Promise.resolve(queued)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null
        reject(new TransportError('ETIMEDOUT', `no reply within ${timeoutMs} ms at ${stage}`))
      }, timeoutMs)
      this.waiter = (r) => {
        clearTimeout(timer)
        this.waiter = null
        if (r instanceof TransportError) reject(r)
        else resolve(r)
      }
    })
  }

  private onData(chunk: string): void {
    this.buffered += chunk
    let eol = this.buffered.indexOf('\n')
    while (eol !== -1) {
      const line = this.buffered.slice(0, eol).replace(/\r$/, '')
      this.buffered = this.buffered.slice(eol + 1)
      this.lines.push(line)
      // The last line of a reply has a space (or nothing) after the code; "250-" continues.
      if (line.length < 4 || line[3] !== '-') {
        const reply: Reply = { code: Number.parseInt(line.slice(0, 3), 10) || 0, text: this.lines.join('\n') }
        this.lines = []
        if (this.waiter) this.waiter(reply)
        else this.replies.push(reply)
      }
      eol = this.buffered.indexOf('\n')
    }
  }

  private fail(err: TransportError): void {
    this.failure ??= err
    this.waiter?.(this.failure)
  }
}

const DOT = 0x2e
const CR = 0x0d
const LF = 0x0a

/** CRLF line endings (bare LF fixed), a final CRLF, and a dot doubled at each line start: ready to send after DATA. */
export function toWireFormat(message: Buffer | string): Buffer {
  const src = typeof message === 'string' ? Buffer.from(message, 'utf8') : message
  const out = Buffer.allocUnsafe(src.length * 2 + 3)
  let n = 0
  let lineStart = true
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!
    if (lineStart && b === DOT) out[n++] = DOT
    if (b === LF && (i === 0 || src[i - 1] !== CR)) out[n++] = CR
    out[n++] = b
    lineStart = b === LF
  }
  if (!lineStart) {
    out[n++] = CR
    out[n++] = LF
  }
  return out.subarray(0, n)
}

function connect(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new TransportError('ETIMEDOUT', `connect to ${host}:${port} timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(new TransportError('ESOCKET', `connect ${err.code ?? 'error'} ${host}:${port}`))
    })
  })
}

/** Sends one message over a new connection. Never rejects: every failure is a result with ok false. */
export async function sendMessage(opts: SendOptions): Promise<SendResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const started = performance.now()
  let stage: SendStage = 'connect'
  let last: Reply | null = null
  const rcptReplies: RcptReply[] = []
  const result = (ok: boolean, error?: string): SendResult => ({
    ok,
    stage,
    code: last?.code ?? null,
    reply: last?.text ?? '',
    rcptReplies,
    latencyMs: performance.now() - started,
    ...(error === undefined ? {} : { error }),
  })
  let socket: net.Socket | null = null
  try {
    socket = await connect(opts.host, opts.port, timeoutMs)
    const reader = new ReplyReader(socket)
    const sock = socket
    const read = async (): Promise<Reply> => {
      last = await reader.next(timeoutMs, stage)
      return last
    }
    const quit = async (): Promise<void> => {
      // Courtesy only: the outcome is already decided, so errors and slowness here are ignored.
      sock.write('QUIT\r\n')
      await reader.next(Math.min(timeoutMs, 1000), stage).catch(() => null)
    }

    stage = 'banner'
    if ((await read()).code !== 220) return result(false)

    stage = 'ehlo'
    sock.write(`EHLO ${opts.helo ?? 'sender.mxgate.test'}\r\n`)
    let ehlo = await read()
    if (ehlo.code >= 500 && ehlo.code < 600) {
      sock.write(`HELO ${opts.helo ?? 'sender.mxgate.test'}\r\n`)
      ehlo = await read()
    }
    if (ehlo.code !== 250) return result(false)
    const pipelining = opts.pipelining === true && /^250[- ]PIPELINING\b/im.test(ehlo.text)

    const mailCmd = `MAIL FROM:<${opts.from}>\r\n`
    const rcptCmds = opts.to.map((rcpt) => `RCPT TO:<${rcpt}>\r\n`)
    if (pipelining) sock.write(`${mailCmd}${rcptCmds.join('')}DATA\r\n`)

    stage = 'mail'
    if (!pipelining) sock.write(mailCmd)
    const mailReply = await read()
    stage = 'rcpt'
    let lastRcpt: Reply | null = null
    for (const [i, rcpt] of opts.to.entries()) {
      if (!pipelining) {
        if (mailReply.code !== 250) break
        sock.write(rcptCmds[i]!)
      }
      lastRcpt = await read()
      rcptReplies.push({ rcpt, code: lastRcpt.code, reply: lastRcpt.text })
    }
    const accepted = rcptReplies.filter((r) => r.code >= 200 && r.code < 300).length
    stage = 'data'
    if (!pipelining && mailReply.code === 250 && accepted > 0) sock.write('DATA\r\n')
    const dataReply = pipelining || (mailReply.code === 250 && accepted > 0) ? await read() : null

    if (mailReply.code !== 250) {
      stage = 'mail'
      last = mailReply
    } else if (accepted === 0) {
      stage = 'rcpt'
      last = lastRcpt
    } else if (dataReply?.code === 354) {
      stage = 'dot'
      sock.write(Buffer.concat([toWireFormat(opts.message), Buffer.from('.\r\n')]))
      const dot = await read()
      const outcome = result(dot.code >= 200 && dot.code < 300)
      await quit()
      return outcome
    }
    const outcome = result(false)
    await quit()
    return outcome
  } catch (err) {
    return result(false, err instanceof Error ? err.message : String(err))
  } finally {
    socket?.destroy()
  }
}

export interface TestMessageOptions {
  /** Without angle brackets; a random one when left out. */
  messageId?: string
  subject?: string
  bodyLines?: string[]
  /** Pad the body with filler lines so the whole message is exactly this many bytes (when it is not smaller). */
  size?: number
  from?: string
  to?: string[]
}

/** A plausible RFC 5322 message with CRLF line endings and a Message-ID header. */
export function makeTestMessage(opts: TestMessageOptions = {}): Buffer {
  const messageId = opts.messageId ?? `${randomUUID()}@mxgate.test`
  const from = opts.from ?? 'sender@example.test'
  const to = opts.to ?? ['rcpt@example.test']
  const headers = [
    `From: Test Sender <${from}>`,
    `To: ${to.map((a) => `<${a}>`).join(', ')}`,
    `Subject: ${opts.subject ?? `test message ${messageId}`}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${messageId.replace(/^<|>$/g, '')}>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ]
  const body = opts.bodyLines ?? ['This is a test message from mxgate.', `Its id is ${messageId}.`]
  let text = `${headers.join('\r\n')}\r\n\r\n${body.map((l) => `${l}\r\n`).join('')}`
  const need = (opts.size ?? 0) - Buffer.byteLength(text)
  if (need > 0) text = padTo(text, need)
  return Buffer.from(text, 'utf8')
}

/** Adds exactly `need` bytes of ASCII filler lines (each CRLF-ended) to a CRLF-ended text. */
function padTo(text: string, need: number): string {
  if (need === 1) return `${text.slice(0, -2)}x\r\n`
  const lines: string[] = []
  let left = need
  while (left > 0) {
    // A line costs its length + 2; never leave exactly 1 byte, which no line can fill.
    let len = Math.min(76, left - 2)
    if (left - (len + 2) === 1) len -= 1
    lines.push(`${'x'.repeat(len)}\r\n`)
    left -= len + 2
  }
  return text + lines.join('')
}

export interface SendManyOptions {
  target: { host: string; port: number }
  count: number
  concurrency: number
  make: (i: number) => { from: string; to: string[]; message: Buffer | string }
  /** Per wait, as in sendMessage. */
  timeoutMs?: number
  /** No new message starts after this long (default 120 s); those left get ok:false and an error saying so. */
  timeLimitMs?: number
  pipelining?: boolean
  onProgress?: (done: number, total: number, result: SendResult) => void
}

/** Sends `count` messages, at most `concurrency` at once; results are in index order. */
export async function sendMany(opts: SendManyOptions): Promise<SendResult[]> {
  const deadline = performance.now() + (opts.timeLimitMs ?? 120_000)
  const results: SendResult[] = new Array(opts.count)
  let nextIndex = 0
  let done = 0
  const worker = async (): Promise<void> => {
    while (nextIndex < opts.count) {
      const i = nextIndex++
      let r: SendResult
      if (performance.now() > deadline) {
        const error = `not sent: the sendMany time limit of ${opts.timeLimitMs ?? 120_000} ms was reached`
        r = { ok: false, stage: 'connect', code: null, reply: '', rcptReplies: [], latencyMs: 0, error }
      } else {
        const m = opts.make(i)
        r = await sendMessage({
          ...opts.target,
          ...m,
          ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
          ...(opts.pipelining === undefined ? {} : { pipelining: opts.pipelining }),
        })
      }
      results[i] = r
      opts.onProgress?.(++done, opts.count, r)
    }
  }
  const workers = Math.max(1, Math.min(opts.concurrency, opts.count))
  await Promise.all(Array.from({ length: workers }, () => worker()))
  return results
}
