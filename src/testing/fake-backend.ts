// A real SMTP server on loopback that plays a backend mail server, good or bad on demand (tests, demo, CLI).
//
// Built on raw `net` rather than the `smtp-server` package: smtp-server has no EHLO hook (no reply/stall/drop at
// EHLO), always sends its own 220 banner (no stall or custom reply at banner), hides the socket (no "drop the
// connection after the final dot without a reply") and re-frames the message. Here every stage is ours, the message
// bytes are kept exactly as sent (after un-dot-stuffing), and pipelined commands are answered strictly in order.
import { EventEmitter } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import { CanaryForwarder, type CanaryReturnTarget } from './fake-backend-canary'
import { type ReceivedMessage, Session, type SessionHost } from './fake-backend-session'
import {
  createRng,
  type FaultAction,
  type FaultRule,
  type FaultStage,
  pickFault,
  refusesConnections,
  validateFaultRules,
} from './fault-rules'

export type { CanaryReturnTarget } from './fake-backend-canary'
export type { ReceivedMessage } from './fake-backend-session'
export type { FaultAction, FaultRule, FaultStage } from './fault-rules'

export interface FakeBackendOptions {
  id?: string
  /** Default 127.0.0.1. */
  host?: string
  /** Default 0: a free port, readable from `port` after start(). */
  port?: number
  faults?: FaultRule[]
  /** "Accepts slowly": wait this long before answering the final dot with 250. */
  acceptDelayMs?: number
  /** Advertise PIPELINING in the EHLO reply (default true). Pipelined input is answered in order either way. */
  pipelining?: boolean
  /** Advertise SMTPUTF8 (default true); off plays a backend that cannot take non-ASCII addresses. */
  smtputf8?: boolean
  /** Seed for the fault probabilities, so a run repeats exactly. Without it Math.random is used. */
  seed?: number
  /** Name in the banner and EHLO reply. */
  hostname?: string
  /** Offer STARTTLS with this certificate chain and key (PEM); without it STARTTLS is not offered. */
  tls?: { cert: string | Buffer; key: string | Buffer }
  /** "Accepts and loses": this share (0–1) of messages gets 250 after the dot and is then silently thrown away. */
  discardShare?: number
  /** Forward every kept canary (X-Mxgate-Canary) back to mxgate, as the canary mailbox's forwarding would. */
  canaryReturn?: CanaryReturnTarget
}

export interface FaultEvent {
  stage: FaultStage
  action: FaultAction
  rule: FaultRule
  sessionId: string
  rcpt?: string
  messageId?: string | null
}

export interface FakeBackendCounters {
  /** TCP connections accepted (including ones reset or dropped at connect). */
  connections: number
  /** Connections that completed their first EHLO/HELO. */
  sessions: number
  /** Messages accepted with a 2xx after the final dot (discarded ones included). */
  messages: number
  /** Of those, messages silently thrown away after their 250 (discardShare). */
  discarded: number
  faultsInjected: number
}

/** One MAIL FROM the backend saw: every delivery attempt, faulted or not (the scenario suite counts "own messages"). */
export interface TransactionEvent {
  sessionId: string
  at: number
}

/** One RCPT TO the backend saw in a transaction, faulted or not: a delivery's or a recipient check's. */
export interface RecipientEvent {
  sessionId: string
  rcpt: string
  at: number
}

export type FakeBackendEvents = {
  message: [ReceivedMessage]
  fault: [FaultEvent]
  transaction: [TransactionEvent]
  recipient: [RecipientEvent]
}

export class FakeBackendError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'FakeBackendError'
    this.code = code
  }
}

export class FakeBackend extends EventEmitter<FakeBackendEvents> {
  readonly id: string
  readonly host: string
  port: number
  readonly received: ReceivedMessage[] = []
  /**
   * Messages whose final dot was received but no reply went out because the connection closed: fault dot/drop, or
   * the client hung up during acceptDelayMs. The "did it arrive?" case: the sender must assume it did not.
   */
  readonly droppedAfterDot: ReceivedMessage[] = []
  /** Messages whose final dot was received and then never answered (fault dot/stall). */
  readonly stalledAfterDot: ReceivedMessage[] = []
  readonly counters: FakeBackendCounters = {
    connections: 0,
    sessions: 0,
    messages: 0,
    discarded: 0,
    faultsInjected: 0,
  }
  /** Messages answered 250 and then thrown away (discardShare): the "lost after 250" a canary catches. */
  readonly discarded: ReceivedMessage[] = []
  /** Share of accepted messages thrown away after their 250; may be changed at run time. */
  discardShare: number
  /** Forwards canaries back to mxgate when canaryReturn is set (or forwardCanaries was called). */
  canaries: CanaryForwarder | null
  /** Wait before each 250 after the dot; may be changed at run time to make the backend slow or fast. */
  acceptDelayMs: number

  private faults: FaultRule[]
  private readonly rng: () => number
  private readonly sessionHost: SessionHost
  private server: net.Server | null = null
  private readonly sockets = new Set<net.Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private started = false
  private stopping: Promise<void> | null = null
  private sessionSeq = 0

  constructor(opts: FakeBackendOptions = {}) {
    super()
    this.id = opts.id ?? 'fake-backend'
    this.host = opts.host ?? '127.0.0.1'
    this.port = opts.port ?? 0
    this.faults = [...(opts.faults ?? [])]
    validateFaultRules(this.faults)
    this.rng = opts.seed === undefined ? Math.random : createRng(opts.seed)
    this.acceptDelayMs = opts.acceptDelayMs ?? 0
    this.discardShare = opts.discardShare ?? 0
    if (!(this.discardShare >= 0 && this.discardShare <= 1))
      throw new FakeBackendError('EBADOPTION', `discardShare must be from 0 to 1, got ${opts.discardShare}`)
    this.canaries = opts.canaryReturn ? new CanaryForwarder(opts.canaryReturn) : null
    const backend = this
    this.sessionHost = {
      hostname: opts.hostname ?? `${this.id}.fake.test`,
      pipelining: opts.pipelining ?? true,
      smtputf8: opts.smtputf8 ?? true,
      tls: opts.tls ? tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : null,
      get acceptDelayMs() {
        return backend.acceptDelayMs
      },
      fault: (stage, sessionId, extra = {}) => {
        const rule = pickFault(this.faults, stage, this.rng, extra.rcpt)
        if (rule) {
          this.counters.faultsInjected++
          this.emit('fault', { stage, action: rule.action, rule, sessionId, ...extra })
        }
        return rule
      },
      greeted: () => {
        this.counters.sessions++
      },
      mailStarted: (sessionId) => {
        this.emit('transaction', { sessionId, at: Date.now() })
      },
      rcptSeen: (sessionId, rcpt) => {
        this.emit('recipient', { sessionId, rcpt, at: Date.now() })
      },
      finished: (kind, msg) => {
        if (kind === 'received') {
          this.counters.messages++
          if (this.discardShare > 0 && this.rng() < this.discardShare) {
            this.counters.discarded++
            this.discarded.push(msg)
            return
          }
          this.received.push(msg)
          this.emit('message', msg)
          this.canaries?.take(msg)
        } else if (kind === 'dropped') {
          this.droppedAfterDot.push(msg)
        } else {
          this.stalledAfterDot.push(msg)
        }
      },
      later: (ms, fn) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          fn()
        }, ms)
        this.timers.add(timer)
      },
    }
  }

  /** Resolves once listening; `port` then holds the real port. With a 'refuse' rule it listens, then closes. */
  async start(): Promise<void> {
    if (this.started) throw new FakeBackendError('EALREADYSTARTED', `fake backend ${this.id} is already started`)
    this.started = true
    await this.listen()
    if (refusesConnections(this.faults)) this.closeListener()
  }

  /**
   * Starts forwarding kept canaries to mxgate, those already received first (a test learns mxgate's port only after
   * mxgate started, and its first canaries may be here by then).
   */
  forwardCanaries(target: CanaryReturnTarget): CanaryForwarder {
    this.canaries = new CanaryForwarder(target)
    for (const msg of this.received) this.canaries.take(msg)
    return this.canaries
  }

  /** Replaces the fault rules; opens or closes the listener (same port) when 'refuse' comes or goes. */
  async setFaults(rules: FaultRule[]): Promise<void> {
    validateFaultRules(rules)
    this.faults = [...rules]
    if (!this.started || this.stopping) return
    if (refusesConnections(this.faults)) this.closeListener()
    else if (!this.server) await this.listen()
  }

  /** Closes the listener, destroys every open socket and pending timer. Safe to call twice or before start. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop()
    return this.stopping
  }

  /** Forgets received messages and zeroes the counters (the demo reuses one backend across scenarios). */
  clear(): void {
    this.received.length = 0
    this.droppedAfterDot.length = 0
    this.stalledAfterDot.length = 0
    this.discarded.length = 0
    Object.assign(this.counters, { connections: 0, sessions: 0, messages: 0, discarded: 0, faultsInjected: 0 })
  }

  private async doStop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    const server = this.server
    this.server = null
    for (const socket of this.sockets) socket.destroy()
    this.sockets.clear()
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
    await this.canaries?.settle()
  }

  private listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket))
    return new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new FakeBackendError(
            err.code ?? 'ELISTEN',
            `fake backend ${this.id} cannot listen on ${this.host}:${this.port}: ${err.message} (pick another port)`,
          ),
        )
      })
      server.listen({ host: this.host, port: this.port }, () => {
        const addr = server.address()
        if (addr && typeof addr === 'object') this.port = addr.port
        this.server = server
        resolve()
      })
    })
  }

  private closeListener(): void {
    // close() releases the port at once (new connections get ECONNREFUSED); open sessions carry on until they end.
    this.server?.close()
    this.server = null
  }

  private onConnection(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy()
      return
    }
    this.counters.connections++
    this.sockets.add(socket)
    socket.on('close', () => this.sockets.delete(socket))
    // Clients resetting or vanishing is normal here; the session just ends.
    socket.on('error', () => {})
    new Session(socket, `${this.id}-${++this.sessionSeq}`, this.sessionHost).begin()
  }
}
