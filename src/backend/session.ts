// One SMTP connection to one backend: connect, greet, STARTTLS, then transactions until it breaks or is closed.
import { isAscii } from 'node:buffer'
import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from '../log'
import type { Envelope } from '../message'
import { wireEnvelope } from './address'
import type { FailureKind, RecipientReply, SmtpReply, Stage, StageFailure } from './outcome'
import { isPositive, ReplyReader } from './reply-parser'

export interface StageTimeouts {
  connect: number
  banner: number
  ehlo: number
  mail: number
  rcpt: number
  data: number
  dot: number
  rset: number
  quit: number
}

export interface SessionOptions {
  host: string
  port: number
  heloName: string
  timeouts: StageTimeouts
  starttls: 'off' | 'opportunistic' | 'required'
  tls: BackendTlsOptions
}

/** How the client checks a backend's certificate after STARTTLS. */
export interface BackendTlsOptions {
  /** Verify the certificate (starttls = required); a certificate that does not verify is a TLS failure. */
  rejectUnauthorized: boolean
  /** Trusted CAs (PEM) instead of the system's: a private CA, or the backends' self-signed certificates. */
  ca?: Buffer
  /** The name the certificate must carry; default the backend's host name (or its IP address). */
  servername?: string
}

/** OpenSSL's verification results and Node's name check: the certificate, not the connection, is at fault. */
const CERT_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|ISSUER/

/** A stage went wrong; `failure` says how. Thrown inside the session and client only: deliver() never rejects. */
export class StageError extends Error {
  readonly code = 'EBACKENDSTAGE'
  override name = 'StageError'
  constructor(readonly failure: StageFailure) {
    super(failure.message)
  }
}

export interface Extensions {
  pipelining: boolean
  size: boolean
  eightBitMime: boolean
  smtputf8: boolean
  starttls: boolean
}

/** A MAIL command line and the recipients as they go on the wire, in the envelope's order. */
interface MailCommand {
  command: string
  to: string[]
}

export interface TransactionResult {
  accepted: string[]
  refused: RecipientReply[]
  dotReply: SmtpReply | null
  failure: StageFailure | null
  /** The backend closed a reused session before answering anything of this transaction: retry on a fresh one. */
  stale: boolean
}

interface Waiter {
  stage: Stage
  started: number
  ms: number
  byDeadline: boolean
  /** What a socket close during this wait means (a TLS handshake that dies is a TLS failure, not a reset). */
  closeKind: FailureKind
  timer: NodeJS.Timeout
  resolve: (reply: SmtpReply | null) => void
  reject: (err: StageError) => void
}

const NO_EXTENSIONS: Extensions = {
  pipelining: false,
  size: false,
  eightBitMime: false,
  smtputf8: false,
  starttls: false,
}
const DOT = Buffer.from('.\r\n')
const NO_BODY = Buffer.alloc(0)
const CRLF_DOT = Buffer.from('\r\n.\r\n')
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'])
const UNSAFE_ADDRESS = /[\r\n\0]/

export class Session {
  extensions: Extensions = NO_EXTENSIONS
  /** Transactions started on this session. */
  messages = 0
  /** The last transaction was aborted before its end of data: send RSET before the next one. */
  needsRset = false
  /** Called once when the socket closes, whoever closed it. */
  onClose: (() => void) | null = null
  readonly closed: Promise<void>

  private sock: net.Socket
  private readonly plain: net.Socket
  private readonly reader = new ReplyReader()
  private readonly queue: SmtpReply[] = []
  private waiter: Waiter | null = null
  /** Set once the session can carry nothing more: timeout, reset, protocol error, 421, unsolicited reply. */
  private dead: { kind: FailureKind; message: string } | null = null
  private isClosed = false
  private sockError: NodeJS.ErrnoException | null = null
  /** Replies are expected; one arriving otherwise is unsolicited (e.g. "421 idle timeout" while pooled). */
  private expecting = true
  private txReplies = 0
  private stageStarted = 0
  private lastReply: SmtpReply | null = null
  private markClosed: () => void = () => {}
  /** The reply to an RSET sent by startRset(): the next transaction (or QUIT) reads it first. */
  private resetting: Promise<boolean> | null = null
  /** RSET failed: the session is saying QUIT on its own and takes no more transactions. */
  private retiring = false

  private constructor(
    private readonly opts: SessionOptions,
    private readonly log: Logger,
    private readonly debug: boolean,
  ) {
    this.closed = new Promise((resolve) => {
      this.markClosed = resolve
    })
    this.plain = net.connect({ host: opts.host, port: opts.port })
    this.plain.setNoDelay(true)
    this.sock = this.plain
    this.plain.on('data', this.onData)
    this.plain.on('error', this.onError)
    this.plain.on('close', this.onSocketClose)
    this.plain.once('connect', () => this.settle(null))
  }

  /** Start connecting; call ready() next. Split in two so the owner can track (and close) a session still connecting. */
  static connect(opts: SessionOptions, log: Logger): Session {
    return new Session(opts, log, log.isLevelEnabled('debug'))
  }

  /** Banner, EHLO (HELO fallback), STARTTLS per options. Throws StageError after destroying the session. */
  /** `quitOnRefusal`: after a refusal (a reply, the connection still up) say QUIT before closing (probes do). */
  async ready(deadlineAt: number, opts: { quitOnRefusal?: boolean } = {}): Promise<void> {
    try {
      await this.handshake(deadlineAt)
    } catch (err) {
      if (opts.quitOnRefusal && err instanceof StageError && err.failure.kind === 'reply' && this.reusable)
        await this.quit(Math.min(deadlineAt, Date.now() + this.opts.timeouts.quit))
      this.destroy()
      throw err
    }
  }

  get reusable(): boolean {
    return this.dead === null && !this.isClosed && !this.retiring
  }

  /** One mail transaction. Never throws: failures are in the result; the session says afterwards if it is reusable. */
  async send(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<TransactionResult> {
    const result: TransactionResult = { accepted: [], refused: [], dotReply: null, failure: null, stale: false }
    const reused = this.messages > 0
    const mail = await this.begin(envelope, body, deadlineAt, result)
    if (mail === null) return result
    this.messages++
    this.txReplies = 0
    this.expecting = true
    try {
      if (this.extensions.pipelining) await this.pipelined(mail, envelope, result, deadlineAt)
      else await this.lockstep(mail, envelope, result, deadlineAt)
      if (result.failure === null && result.accepted.length > 0) {
        this.writeBody(body)
        const dot = await this.expect('dot', deadlineAt)
        result.dotReply = dot
        if (!isPositive(dot)) result.failure = this.replyFailure('dot', dot)
      }
    } catch (err) {
      if (!(err instanceof StageError)) throw err
      result.failure = err.failure
    }
    this.expecting = false
    // A pooled session the backend closed (or timed out with 421) just before we used it: not the backend's fault.
    const first421 = this.txReplies === 1 && this.lastReply?.code === 421
    result.stale = reused && ((this.txReplies === 0 && result.failure?.kind === 'reset') || first421)
    return result
  }

  /**
   * A recipient check, as Postfix's address probe: MAIL and RCPT without DATA. The transaction is left open
   * (needsRset), so the owner's release says RSET off the caller's path. Never throws, like send().
   */
  async verify(envelope: Envelope, deadlineAt: number): Promise<TransactionResult> {
    const result: TransactionResult = { accepted: [], refused: [], dotReply: null, failure: null, stale: false }
    const reused = this.messages > 0
    const mail = await this.begin(envelope, NO_BODY, deadlineAt, result)
    if (mail === null) return result
    this.messages++
    this.txReplies = 0
    this.expecting = true
    try {
      if (this.extensions.pipelining) {
        let group = mail.command
        for (const rcpt of mail.to) group += `RCPT TO:<${rcpt}>\r\n`
        this.write(group, 'mail')
        const mailReply = await this.expectLive('mail', deadlineAt)
        for (const rcpt of envelope.to) this.recipient(rcpt, await this.expectLive('rcpt', deadlineAt), result)
        if (!isPositive(mailReply)) {
          result.accepted.length = 0
          result.refused.length = 0
          result.failure = this.replyFailure('mail', mailReply)
        }
      } else {
        this.write(mail.command, 'mail')
        const mailReply = await this.expectLive('mail', deadlineAt)
        if (!isPositive(mailReply)) result.failure = this.replyFailure('mail', mailReply)
        else
          for (const [i, rcpt] of envelope.to.entries()) {
            this.write(`RCPT TO:<${mail.to[i]}>\r\n`, 'rcpt')
            this.recipient(rcpt, await this.expectLive('rcpt', deadlineAt), result)
          }
      }
    } catch (err) {
      if (!(err instanceof StageError)) throw err
      result.failure = err.failure
    }
    this.needsRset = true
    this.expecting = false
    const first421 = this.txReplies === 1 && this.lastReply?.code === 421
    result.stale = reused && ((this.txReplies === 0 && result.failure?.kind === 'reset') || first421)
    return result
  }

  /**
   * Before a transaction: the MAIL command, after the reply to a pending RSET. Null, with the reason in `result`,
   * when nothing of the transaction may be sent.
   */
  private async begin(
    envelope: Envelope,
    body: Buffer,
    deadlineAt: number,
    result: TransactionResult,
  ): Promise<MailCommand | null> {
    const mail = this.mailCommand(envelope, body)
    if ('stage' in mail) {
      result.failure = mail
      return null
    }
    const resetting = this.resetting
    if (resetting !== null) {
      // Leased while its RSET is in flight: wait for the reply, but no longer than the delivery may take.
      const waitStarted = Date.now()
      if (!(await this.settlesBy(resetting, deadlineAt))) {
        const msg = 'no reply to the RSET before this transaction within the delivery deadline'
        result.failure = this.failure('rset', 'timeout', msg, waitStarted)
        return null
      }
      if (!(await resetting)) {
        // The RSET failed: nothing of this transaction was sent, so the caller retries on a fresh session, as for
        // a pooled session the backend had closed.
        result.failure = this.failure('rset', this.dead?.kind ?? 'reply', 'RSET before this transaction failed', 0)
        result.stale = true
        return null
      }
    }
    return mail
  }

  /**
   * RSET after an aborted transaction without waiting for its reply, so the owner can park (and lease) the session at
   * once: the next send() or quit() waits behind the reply instead of a delivery opening a second connection. When
   * RSET fails the session says QUIT and closes on its own (onClose tells the owner) and the next send() is stale.
   */
  startRset(): void {
    if (this.resetting !== null) return
    const pending = this.rset().then((clean) => {
      if (this.resetting === pending) this.resetting = null
      if (!clean) {
        const polite = this.reusable
        this.retiring = true
        void this.sayQuit(Date.now() + this.opts.timeouts.quit, polite)
      }
      return clean
    })
    this.resetting = pending
  }

  /** RSET after an aborted transaction; true when the session is clean again. */
  async rset(): Promise<boolean> {
    try {
      this.expecting = true
      this.write('RSET\r\n', 'rset')
      const reply = await this.expect('rset', Date.now() + this.opts.timeouts.rset)
      this.expecting = false
      this.needsRset = !isPositive(reply)
      return reply.code !== 421 && isPositive(reply)
    } catch {
      return false
    }
  }

  /** NOOP for health probes. Reported as stage 'rset': outcome.ts has no NOOP stage and both are no-transaction. */
  async noop(deadlineAt: number): Promise<StageFailure | null> {
    try {
      this.expecting = true
      this.write('NOOP\r\n', 'rset')
      const reply = await this.expect('rset', deadlineAt)
      this.expecting = false
      return isPositive(reply) ? null : this.replyFailure('rset', reply, 'NOOP')
    } catch (err) {
      if (err instanceof StageError) return err.failure
      throw err
    }
  }

  /** QUIT politely, then close. Returns why QUIT failed, if it did (a backend closing right after QUIT is fine). */
  async quit(deadlineAt = Date.now() + this.opts.timeouts.quit): Promise<StageFailure | null> {
    // A reply still owed to an RSET comes before QUIT's own, but QUIT's deadline bounds the wait for it too.
    if (this.resetting !== null && !(await this.settlesBy(this.resetting, deadlineAt))) {
      this.destroy()
      return this.failure('quit', 'timeout', 'no reply to RSET before the QUIT deadline', 0)
    }
    return this.sayQuit(deadlineAt, this.reusable)
  }

  /** Whether `p` settles before `deadlineAt`. */
  private async settlesBy(p: Promise<unknown>, deadlineAt: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadlineAt - Date.now()))
    })
    try {
      return await Promise.race([p.then(() => true), late])
    } finally {
      clearTimeout(timer)
    }
  }

  private async sayQuit(deadlineAt: number, polite: boolean): Promise<StageFailure | null> {
    let failure: StageFailure | null = null
    if (polite) {
      try {
        this.expecting = true
        this.write('QUIT\r\n', 'quit')
        const reply = await this.expect('quit', deadlineAt)
        if (!isPositive(reply)) failure = this.replyFailure('quit', reply)
      } catch (err) {
        if (!(err instanceof StageError)) throw err
        if (err.failure.kind !== 'reset') failure = err.failure
      }
    }
    this.destroy()
    return failure
  }

  destroy(): void {
    this.dead ??= { kind: 'reset', message: 'session closed by mxgate' }
    this.sock.destroy()
    this.plain.destroy()
  }

  private async handshake(deadlineAt: number): Promise<void> {
    await this.wait('connect', deadlineAt, 'reset')
    const banner = await this.expect('banner', deadlineAt)
    if (banner.code !== 220) throw new StageError(this.replyFailure('banner', banner))
    await this.greet(deadlineAt)
    if (this.opts.starttls !== 'off') await this.starttls(deadlineAt)
    this.expecting = false
  }

  private async greet(deadlineAt: number): Promise<void> {
    this.write(`EHLO ${this.opts.heloName}\r\n`, 'ehlo')
    const ehlo = await this.expect('ehlo', deadlineAt)
    if (isPositive(ehlo)) {
      this.extensions = parseExtensions(ehlo)
      return
    }
    if (ehlo.code < 500) throw new StageError(this.replyFailure('ehlo', ehlo))
    this.write(`HELO ${this.opts.heloName}\r\n`, 'ehlo')
    const helo = await this.expect('ehlo', deadlineAt)
    if (!isPositive(helo)) throw new StageError(this.replyFailure('ehlo', helo, 'HELO after EHLO'))
    this.extensions = NO_EXTENSIONS
  }

  private async starttls(deadlineAt: number): Promise<void> {
    const required = this.opts.starttls === 'required'
    if (!this.extensions.starttls) {
      if (!required) return
      const msg = 'backend does not offer STARTTLS; enable it there or set starttls to opportunistic'
      throw new StageError(this.failure('starttls', 'tls', msg, 0))
    }
    this.write('STARTTLS\r\n', 'starttls')
    const reply = await this.expect('starttls', deadlineAt)
    if (reply.code !== 220) {
      if (!required && reply.code !== 421) return // opportunistic: the backend said no, stay in plain text
      const msg = `backend refused STARTTLS: ${reply.code} ${reply.lines[0] ?? ''}`.trimEnd()
      throw new StageError(this.failure('starttls', 'tls', msg, 0))
    }
    // Anything already buffered after 220 was injected before the handshake (CVE-2011-0411 style): refuse it.
    if (this.reader.partial || this.queue.length > 0) {
      throw new StageError(this.fatal('starttls', 'protocol', 'backend sent data after 220 to STARTTLS'))
    }
    const { rejectUnauthorized, servername, ca } = this.opts.tls
    const name = servername ?? (net.isIP(this.opts.host) ? undefined : this.opts.host)
    // `host` makes the certificate check use the backend's name or IP (the default would be "localhost").
    const secure = tls.connect({
      socket: this.plain,
      host: this.opts.host,
      rejectUnauthorized,
      ...(name ? { servername: name } : {}),
      ...(ca ? { ca } : {}),
    })
    this.plain.removeListener('data', this.onData)
    this.sock = secure
    secure.on('data', this.onData)
    secure.on('error', (err: NodeJS.ErrnoException) => {
      if (rejectUnauthorized && CERT_ERRORS.test(err.code ?? '')) {
        const checked = name ?? this.opts.host
        const against = ca ? 'tls_ca' : 'the system CAs (no tls_ca set)'
        this.dead ??= {
          kind: 'tls',
          message:
            `certificate not verified (${err.code}: ${err.message}) against ${against} and the name ${checked}; ` +
            "starttls = required verifies: set tls_ca to the CA that signed it, tls_servername or the backend's " +
            'servername to a name in it, or starttls = opportunistic to encrypt without verifying',
        }
      }
      this.onError(err)
    })
    secure.on('close', this.onSocketClose)
    secure.once('secureConnect', () => this.settle(null))
    await this.wait('starttls', deadlineAt, 'tls')
    await this.greet(deadlineAt)
  }

  private async pipelined(mail: MailCommand, env: Envelope, result: TransactionResult, deadlineAt: number) {
    let group = mail.command
    for (const rcpt of mail.to) group += `RCPT TO:<${rcpt}>\r\n`
    this.write(`${group}DATA\r\n`, 'mail')
    const mailReply = await this.expectLive('mail', deadlineAt)
    for (const rcpt of env.to) this.recipient(rcpt, await this.expectLive('rcpt', deadlineAt), result)
    const data = await this.expectLive('data', deadlineAt)
    if (!isPositive(mailReply)) {
      // RCPT replies after a refused MAIL say "need MAIL first", nothing about the recipients.
      result.accepted.length = 0
      result.refused.length = 0
      result.failure = this.replyFailure('mail', mailReply)
    } else if (result.accepted.length > 0 && data.code !== 354) result.failure = this.replyFailure('data', data)
    if (result.failure !== null || result.accepted.length === 0) {
      this.needsRset = true
      // 354 with nothing to send: the dialogue is out of step with the backend's; drop the session.
      if (data.code === 354) this.fatal('data', 'protocol', 'backend answered 354 to DATA after refusing MAIL or RCPT')
    }
  }

  private async lockstep(mail: MailCommand, env: Envelope, result: TransactionResult, deadlineAt: number) {
    this.write(mail.command, 'mail')
    const mailReply = await this.expectLive('mail', deadlineAt)
    if (!isPositive(mailReply)) {
      this.needsRset = true
      result.failure = this.replyFailure('mail', mailReply)
      return
    }
    for (const [i, rcpt] of env.to.entries()) {
      this.write(`RCPT TO:<${mail.to[i]}>\r\n`, 'rcpt')
      this.recipient(rcpt, await this.expectLive('rcpt', deadlineAt), result)
    }
    if (result.accepted.length === 0) {
      this.needsRset = true
      return
    }
    this.write('DATA\r\n', 'data')
    const data = await this.expectLive('data', deadlineAt)
    if (data.code !== 354) {
      this.needsRset = true
      result.failure = this.replyFailure('data', data)
    }
  }

  private recipient(rcpt: string, reply: SmtpReply, result: TransactionResult): void {
    if (isPositive(reply)) result.accepted.push(rcpt)
    else result.refused.push({ rcpt, reply })
  }

  /**
   * The MAIL command with its parameters and the recipients as they go on the wire (IDN domains as A-labels to a
   * backend without SMTPUTF8), or why this envelope cannot go to this backend.
   */
  private mailCommand(env: Envelope, body: Buffer): MailCommand | StageFailure {
    if (env.to.length === 0) return this.failure('rcpt', 'unsupported', 'envelope has no recipients', 0)
    for (const rcpt of env.to) {
      if (UNSAFE_ADDRESS.test(rcpt)) return this.failure('rcpt', 'unsupported', 'recipient contains CR, LF or NUL', 0)
    }
    if (UNSAFE_ADDRESS.test(env.from)) return this.failure('mail', 'unsupported', 'sender contains CR, LF or NUL', 0)
    const ext = this.extensions
    const wire = wireEnvelope(env, ext.smtputf8)
    if (wire === null) {
      const msg = 'envelope has a non-ASCII local part but the backend does not advertise SMTPUTF8; enable it there'
      return this.failure('mail', 'unsupported', msg, 0)
    }
    let command = `MAIL FROM:<${wire.from}>`
    if (ext.size) command += ` SIZE=${body.length}`
    if (ext.eightBitMime && !isAscii(body)) command += ' BODY=8BITMIME'
    if (wire.smtputf8) command += ' SMTPUTF8'
    return { command: `${command}\r\n`, to: wire.to }
  }

  /** Body and final dot in one corked burst: bulk data coalesces, and the dot never waits for a delayed ACK. */
  private writeBody(body: Buffer): void {
    const n = body.length
    const tail = n === 0 || (body[n - 2] === 13 && body[n - 1] === 10) ? DOT : CRLF_DOT
    this.stageStarted = Date.now()
    const sock = this.sock
    sock.cork()
    if (n > 0) sock.write(body)
    sock.write(tail)
    sock.uncork()
  }

  private write(data: string, stage: Stage): void {
    if (this.dead !== null) throw new StageError(this.failure(stage, this.dead.kind, this.dead.message, 0))
    this.sock.write(data)
  }

  /** Like expect, but a 421 ends the session at once: the backend is closing the channel (RFC 5321 §3.8). */
  private async expectLive(stage: Stage, deadlineAt: number): Promise<SmtpReply> {
    const reply = await this.expect(stage, deadlineAt)
    if (reply.code === 421) throw new StageError(this.replyFailure(stage, reply))
    return reply
  }

  private expect(stage: Stage, deadlineAt: number): Promise<SmtpReply> {
    this.stageStarted = Date.now()
    const queued = this.queue.shift()
    if (queued) return Promise.resolve(queued)
    return this.wait(stage, deadlineAt, 'reset') as Promise<SmtpReply>
  }

  private wait(stage: Stage, deadlineAt: number, closeKind: FailureKind): Promise<SmtpReply | null> {
    const started = Date.now()
    if (this.dead !== null)
      return Promise.reject(new StageError(this.failure(stage, this.dead.kind, this.dead.message, 0)))
    const limit = stage === 'starttls' ? this.opts.timeouts.ehlo : this.opts.timeouts[stage]
    const left = deadlineAt - started
    const ms = Math.max(0, Math.min(limit, left))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(this.onTimeout, ms)
      this.waiter = { stage, started, ms, byDeadline: left < limit, closeKind, timer, resolve, reject }
    })
  }

  private settle(reply: SmtpReply | null): boolean {
    const w = this.waiter
    if (!w) return false
    this.waiter = null
    clearTimeout(w.timer)
    if (this.debug) this.log.debug({ stage: w.stage, code: reply?.code, ms: Date.now() - w.started }, 'backend stage')
    w.resolve(reply)
    return true
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.reader.push(chunk, this.onReply)
    } catch (err) {
      this.fatal(this.waiter?.stage ?? 'mail', 'protocol', `unparsable reply: ${(err as Error).message}`)
    }
  }

  private readonly onReply = (reply: SmtpReply): void => {
    this.lastReply = reply
    if (!this.expecting) {
      this.fatal('mail', 'protocol', `unsolicited reply while idle: ${reply.code} ${reply.lines[0] ?? ''}`)
      return
    }
    this.txReplies++
    if (reply.code === 421) this.dead ??= { kind: 'reply', message: `backend sent 421: ${reply.lines[0] ?? ''}` }
    if (!this.settle(reply)) this.queue.push(reply)
  }

  private readonly onTimeout = (): void => {
    const w = this.waiter
    if (!w) return
    this.waiter = null
    const why = w.byDeadline ? 'bounded by the delivery deadline' : `the ${w.stage} timeout`
    const failure = this.failure(w.stage, 'timeout', `no answer within ${w.ms} ms (${why})`, w.started)
    this.dead = { kind: 'timeout', message: failure.message }
    this.destroy()
    w.reject(new StageError(failure))
  }

  private readonly onError = (err: Error): void => {
    this.sockError ??= err as NodeJS.ErrnoException
  }

  private readonly onSocketClose = (): void => {
    if (this.isClosed) return
    this.isClosed = true
    const w = this.waiter
    const err = this.sockError
    if (this.dead === null) {
      const code = err?.code ?? ''
      const kind: FailureKind =
        w?.stage === 'connect' && UNREACHABLE.has(code)
          ? 'refused'
          : code === 'ETIMEDOUT'
            ? 'timeout'
            : (w?.closeKind ?? 'reset')
      const where = `${this.opts.host}:${this.opts.port}`
      const what = err
        ? `${err.message}${err.message.includes(where) ? '' : ` (${where})`}`
        : `${where} closed the connection`
      this.dead = { kind, message: what }
    }
    if (w) {
      this.waiter = null
      clearTimeout(w.timer)
      w.reject(new StageError(this.failure(w.stage, this.dead.kind, this.dead.message, w.started)))
    }
    this.markClosed()
    this.onClose?.()
  }

  /** The session is beyond use: record why, close it, and fail whoever waits. */
  private fatal(stage: Stage, kind: FailureKind, message: string): StageFailure {
    const failure = this.failure(stage, kind, message, this.stageStarted)
    this.dead = { kind, message }
    const w = this.waiter
    this.waiter = null
    if (w) {
      clearTimeout(w.timer)
      w.reject(new StageError(failure))
    }
    this.destroy()
    return failure
  }

  private replyFailure(stage: Stage, reply: SmtpReply, what?: string): StageFailure {
    if (reply.code === 421) this.dead ??= { kind: 'reply', message: `backend sent 421 at ${stage}` }
    const text = `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${reply.lines[0] ?? ''}`.trimEnd()
    const message = `${what ?? stage}: ${text}`
    return { stage, kind: 'reply', reply, message, elapsedMs: Date.now() - this.stageStarted }
  }

  private failure(stage: Stage, kind: FailureKind, message: string, started: number): StageFailure {
    const elapsedMs = started > 0 ? Date.now() - started : 0
    return { stage, kind, reply: this.lastReply, message: `${stage}: ${message}`, elapsedMs }
  }
}

/** EHLO keywords this client uses (RFC 5321 §4.1.1.1: one per line after the greeting line). */
export function parseExtensions(ehlo: SmtpReply): Extensions {
  const ext = { ...NO_EXTENSIONS }
  for (let i = 1; i < ehlo.lines.length; i++) {
    const keyword = (ehlo.lines[i] ?? '').split(' ', 1)[0]?.toUpperCase()
    if (keyword === 'PIPELINING') ext.pipelining = true
    else if (keyword === 'SIZE') ext.size = true
    else if (keyword === '8BITMIME') ext.eightBitMime = true
    else if (keyword === 'SMTPUTF8') ext.smtputf8 = true
    else if (keyword === 'STARTTLS') ext.starttls = true
  }
  return ext
}
