// The SMTP client for one backend: a bounded pool of reusable sessions, a FIFO queue when all are busy, and a
// bounded wait in that queue: mxgate's own session limit is not the backend's fault and must not eat the deadline.
import type { Logger } from '../log'
import type { Envelope } from '../message'
import type { DeliveryAttempt, FailureKind, Stage, StageFailure } from './outcome'
import { isPositive } from './reply-parser'
import {
  type BackendTlsOptions,
  Session,
  type SessionOptions,
  StageError,
  type StageTimeouts,
  type TransactionResult,
} from './session'

export interface BackendEndpoint {
  id: string
  host: string
  port: number
}

export interface ClientOptions {
  heloName: string
  /** Per-stage limits in ms; each stage also stops at the delivery deadline, whichever comes first. */
  timeouts: StageTimeouts
  /** Concurrent connections to this backend. */
  maxSessions: number
  /** How long a delivery waits for a session when all maxSessions are busy, before it is 'saturated'. */
  sessionWaitMs: number
  /** Then QUIT and reconnect. */
  maxMessagesPerSession: number
  /** A pooled idle session is closed after this. */
  idleTimeoutMs: number
  starttls: 'off' | 'opportunistic' | 'required'
  tls: BackendTlsOptions
}

/** How long close() lets busy sessions finish their transaction before destroying them. */
const CLOSE_GRACE_MS = 1000
/** setTimeout fires at once for delays beyond 2^31-1 ms; a far deadline must not mean "time out now". */
const MAX_TIMER_MS = 2 ** 31 - 1

interface Waiting {
  timer: NodeJS.Timeout
  grant: (lease: Session | null | StageFailure) => void
}

/** A session (or a slot for a new one) held for one delivery: deliver on it once, or cancel to give it back. */
export interface DeliveryLease {
  /** Never rejects: every outcome is in the DeliveryAttempt. */
  deliver(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt>
  /**
   * Instead of deliver: ask whether the backend takes these recipients (MAIL, RCPT, then RSET; no DATA). The attempt
   * is `ok` when it accepted at least one; never rejects.
   */
  verify(envelope: Envelope, deadlineAt: number): Promise<DeliveryAttempt>
  /** Give the session back unused (e.g. the breaker would not let the delivery run). No-op after deliver. */
  cancel(): void
}

/** One transaction on a session: a delivery or a recipient check. */
type Transaction = (session: Session) => Promise<TransactionResult>

/** Sees how waits for a busy pool end: a session came in time, or the wait ran out ('saturated'). */
export type SessionWaitObserver = (backendId: string, result: 'granted' | 'saturated', waitedMs: number) => void

export class BackendClient {
  private readonly log: Logger
  private readonly sessionOptions: SessionOptions
  /** Parked sessions, most recently used last: reuse takes the warmest, the coldest reach their idle timeout. */
  private readonly idle: Session[] = []
  private readonly idleTimers = new Map<Session, NodeJS.Timeout>()
  /** Every session with a socket: connecting, busy, idle or saying QUIT. */
  private readonly live = new Set<Session>()
  private readonly waiting: Waiting[] = []
  /** Sessions counted against maxSessions: connecting, busy or idle (not those saying QUIT on their way out). */
  private slots = 0
  private active = 0
  /** Whether the backend's last EHLO (delivery or probe) offered SMTPUTF8; null before the first. */
  private lastSmtputf8: boolean | null = null
  private closing: Promise<void> | null = null

  constructor(
    private readonly endpoint: BackendEndpoint,
    private readonly options: ClientOptions,
    log: Logger,
    private readonly onSessionWait: SessionWaitObserver = () => {},
  ) {
    this.log = log.child({ backend: endpoint.id })
    const { heloName, timeouts, starttls, tls } = options
    this.sessionOptions = { host: endpoint.host, port: endpoint.port, heloName, timeouts, starttls, tls }
  }

  /** Deliveries in progress, queued ones included. */
  get inFlight(): number {
    return this.active
  }

  /**
   * Whether the backend offered SMTPUTF8 at its last EHLO (to a delivery or a probe), or null before the first: an
   * envelope with a non-ASCII local part is refused for good only when no backend could ever take it.
   */
  get smtputf8(): boolean | null {
    return this.lastSmtputf8
  }

  /** Open connections to the backend. Briefly above maxSessions while retired sessions say QUIT. */
  get openSessions(): number {
    return this.live.size
  }

  /** Hand one message to this backend once. Never rejects: every outcome is in the DeliveryAttempt. */
  async deliver(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt> {
    const lease = await this.reserve(deadlineAt)
    return 'deliver' in lease ? lease.deliver(envelope, body, deadlineAt) : lease
  }

  /**
   * Wait for a session to this backend: a lease to deliver on, or the attempt that never started (saturated: all
   * sessions stayed busy for sessionWaitMs or until the deadline; the client is closed). The relay reserves before
   * it asks the breaker, so a wait on mxgate's own limit never counts for or against the backend.
   */
  async reserve(deadlineAt: number): Promise<DeliveryLease | DeliveryAttempt> {
    const started = Date.now()
    this.active++
    let leased = false
    try {
      if (deadlineAt <= started) {
        const msg = 'the delivery deadline passed before the attempt'
        return this.failed(this.failure('connect', 'timeout', msg, started), started)
      }
      const lease = await this.acquire(deadlineAt, started)
      if (lease !== null && !(lease instanceof Session)) return this.failed(lease, started)
      leased = true
      return this.lease(lease, started)
    } finally {
      if (!leased) this.active--
    }
  }

  private lease(held: Session | null, started: number): DeliveryLease {
    let used = false
    const run = async (deadlineAt: number, transaction: Transaction): Promise<DeliveryAttempt> => {
      if (used) throw new Error(`a lease on ${this.endpoint.id} is used once`)
      used = true
      try {
        return await this.attempt(held, transaction, deadlineAt, started)
      } catch (err) {
        // A bug, not a backend outcome; still an outcome, so the relay can fail over instead of hanging.
        const failure = this.failure('connect', 'protocol', `internal error: ${(err as Error).message}`, started)
        return this.failed(failure, started)
      } finally {
        this.active--
      }
    }
    return {
      deliver: (envelope, body, deadlineAt) => run(deadlineAt, (s) => s.send(envelope, body, deadlineAt)),
      verify: (envelope, deadlineAt) => run(deadlineAt, (s) => s.verify(envelope, deadlineAt)),
      cancel: () => {
        if (used) return
        used = true
        this.active--
        if (held === null) this.releaseSlot()
        else this.release(held)
      },
    }
  }

  /** Health probe on a fresh connection outside the pool: banner, EHLO, NOOP, QUIT. Null means healthy. */
  async probe(deadlineAt: number): Promise<StageFailure | null> {
    const started = Date.now()
    if (this.closing) return this.failure('connect', 'reset', `backend client ${this.endpoint.id} is closed`, started)
    const session = this.track(Session.connect(this.sessionOptions, this.log))
    const quitBy = () => Math.min(deadlineAt, Date.now() + this.options.timeouts.quit)
    try {
      await session.ready(deadlineAt, { quitOnRefusal: true })
    } catch (err) {
      if (err instanceof StageError) return err.failure
      throw err
    }
    this.lastSmtputf8 = session.extensions.smtputf8
    const noop = await session.noop(deadlineAt)
    if (noop) {
      // A probe ends with QUIT even after a failed step, while the connection can still carry it.
      await session.quit(quitBy())
      return noop
    }
    return session.quit(quitBy())
  }

  /**
   * One message on a fresh connection outside the pool, ended with QUIT (canaries: a new session like a real
   * sender's, never one of the pool's slots). Never rejects.
   */
  async deliverFresh(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt> {
    const started = Date.now()
    if (this.closing) {
      return this.failed(
        this.failure('connect', 'reset', `backend client ${this.endpoint.id} is closed`, started),
        started,
      )
    }
    const session = this.track(Session.connect(this.sessionOptions, this.log))
    try {
      await session.ready(deadlineAt, { quitOnRefusal: true })
    } catch (err) {
      if (err instanceof StageError) return this.failed(err.failure, started)
      session.destroy()
      throw err
    }
    const result = await session.send(envelope, body, deadlineAt)
    const attempt = this.outcome(result, false, started)
    if (result.failure === null) await session.quit(Math.min(deadlineAt, Date.now() + this.options.timeouts.quit))
    else session.destroy()
    return attempt
  }

  /** QUIT idle sessions, let busy ones finish for a short grace, then destroy what is left. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async attempt(held: Session | null, transaction: Transaction, deadlineAt: number, started: number) {
    let session = held
    for (let fresh = 0; ; fresh++) {
      if (session === null) {
        const opened = await this.open(deadlineAt)
        if (!(opened instanceof Session)) {
          this.releaseSlot()
          return this.failed(opened, started)
        }
        session = opened
      }
      const reused = session.messages > 0
      const result = await transaction(session)
      if (result.stale && fresh === 0 && !this.closing) {
        if (this.log.isLevelEnabled('debug')) this.log.debug('pooled session was closed by the backend; retrying fresh')
        session.destroy()
        session = null
        continue
      }
      this.release(session)
      return this.outcome(result, reused, started)
    }
  }

  private outcome(result: TransactionResult, reused: boolean, started: number): DeliveryAttempt {
    const { accepted, refused, dotReply, failure } = result
    if (failure) this.warn(failure)
    // A delivery is ok on a positive reply to the final dot; a recipient check (no DATA) when a recipient was taken
    // (a delivery without a dot reply and without a failure took no recipient).
    const ok = failure === null && (dotReply !== null ? isPositive(dotReply) : accepted.length > 0)
    const elapsedMs = Date.now() - started
    return { backendId: this.endpoint.id, ok, accepted, refused, dotReply, failure, elapsedMs, reusedSession: reused }
  }

  private failed(failure: StageFailure, started: number): DeliveryAttempt {
    this.warn(failure)
    return {
      backendId: this.endpoint.id,
      ok: false,
      accepted: [],
      refused: [],
      dotReply: null,
      failure,
      elapsedMs: Date.now() - started,
      reusedSession: false,
    }
  }

  /** A parked session, or null with a slot reserved for a new connection, or why neither came before the deadline. */
  private acquire(deadlineAt: number, started: number): Promise<Session | null | StageFailure> {
    if (this.closing) {
      return Promise.resolve(this.failure('connect', 'reset', `backend client ${this.endpoint.id} is closed`, started))
    }
    for (let session = this.idle.pop(); session; session = this.idle.pop()) {
      clearTimeout(this.idleTimers.get(session))
      this.idleTimers.delete(session)
      if (session.reusable) return Promise.resolve(session)
      session.destroy()
      this.slots--
    }
    if (this.slots < this.options.maxSessions) {
      this.slots++
      return Promise.resolve(null)
    }
    // All sessions busy: wait in line, but not for long. A backend that is merely busy with our own traffic is not
    // failing; the relay tries another backend, and the spool takes what none can take now.
    const waitMs = Math.min(deadlineAt - Date.now(), this.options.sessionWaitMs, MAX_TIMER_MS)
    return new Promise((resolve) => {
      const waiter: Waiting = {
        grant: (lease) => {
          clearTimeout(waiter.timer)
          if (!(lease instanceof Session) && lease !== null) return resolve(lease)
          this.onSessionWait(this.endpoint.id, 'granted', Date.now() - started)
          resolve(lease)
        },
        timer: setTimeout(() => {
          const i = this.waiting.indexOf(waiter)
          if (i >= 0) this.waiting.splice(i, 1)
          const waited = Date.now() - started
          this.onSessionWait(this.endpoint.id, 'saturated', waited)
          const max = this.options.maxSessions
          const msg = `all ${max} sessions to ${this.endpoint.id} stayed busy for ${waited} ms (mxgate's own limit: backend_client.max_sessions, session_wait); not the backend's fault`
          resolve(this.failure('connect', 'saturated', msg, started))
        }, waitMs),
      }
      this.waiting.push(waiter)
    })
  }

  private async open(deadlineAt: number): Promise<Session | StageFailure> {
    if (this.closing)
      return this.failure('connect', 'reset', `backend client ${this.endpoint.id} is closed`, Date.now())
    const session = this.track(Session.connect(this.sessionOptions, this.log))
    try {
      await session.ready(deadlineAt)
      this.lastSmtputf8 = session.extensions.smtputf8
      return session
    } catch (err) {
      if (err instanceof StageError) return err.failure
      throw err
    }
  }

  private track(session: Session): Session {
    this.live.add(session)
    session.onClose = () => this.closed(session)
    return session
  }

  /** After a transaction: park, hand to a queued delivery, RSET first, or retire. */
  private release(session: Session): void {
    const spent = session.messages >= this.options.maxMessagesPerSession
    if (!session.reusable || spent || this.closing) {
      this.retire(session)
      return
    }
    // The caller has its answer already; the RSET round trip happens off its path, and the session is leasable at
    // once: its next transaction waits behind the RSET reply rather than a second connection being opened.
    if (session.needsRset) session.startRset()
    this.park(session)
  }

  private park(session: Session): void {
    const next = this.waiting.shift()
    if (next) {
      next.grant(session)
      return
    }
    this.idle.push(session)
    const timer = setTimeout(() => {
      const i = this.idle.indexOf(session)
      if (i < 0) return
      this.idle.splice(i, 1)
      this.idleTimers.delete(session)
      this.retire(session)
    }, this.options.idleTimeoutMs)
    timer.unref()
    this.idleTimers.set(session, timer)
  }

  /** Give up the session's slot at once and say QUIT (or just close) in the background. */
  private retire(session: Session): void {
    if (session.reusable) void session.quit()
    else session.destroy()
    this.releaseSlot()
  }

  private releaseSlot(): void {
    this.slots--
    const next = this.waiting.shift()
    if (next) {
      this.slots++
      next.grant(null)
    }
  }

  private closed(session: Session): void {
    this.live.delete(session)
    const i = this.idle.indexOf(session)
    if (i < 0) return
    // The backend closed a parked session (idle timeout on its side, restart): free its slot for someone else.
    this.idle.splice(i, 1)
    clearTimeout(this.idleTimers.get(session))
    this.idleTimers.delete(session)
    this.releaseSlot()
  }

  private async shutdown(): Promise<void> {
    for (const waiter of this.waiting.splice(0)) {
      waiter.grant(this.failure('connect', 'reset', `backend client ${this.endpoint.id} is closed`, Date.now()))
    }
    for (const timer of this.idleTimers.values()) clearTimeout(timer)
    this.idleTimers.clear()
    const parked = this.idle.splice(0)
    this.slots -= parked.length
    await Promise.all(parked.map((s) => s.quit()))
    if (this.live.size > 0) {
      let timer: NodeJS.Timeout | undefined
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS)
      })
      await Promise.race([Promise.all([...this.live].map((s) => s.closed)), grace])
      clearTimeout(timer)
    }
    const left = [...this.live]
    for (const session of left) session.destroy()
    await Promise.all(left.map((s) => s.closed))
  }

  private warn(failure: StageFailure): void {
    this.log.warn({ stage: failure.stage, kind: failure.kind, code: failure.reply?.code }, failure.message)
  }

  private failure(stage: Stage, kind: FailureKind, message: string, started: number): StageFailure {
    return { stage, kind, reply: null, message: `${stage}: ${message}`, elapsedMs: Date.now() - started }
  }
}
