// Delivers spooled mail through the same relay as live mail: on a backoff schedule, at once (rate-limited) when a
// backend is admitted again, with per-recipient progress, DSNs for permanent refusals, and a lifetime.
import type { MxgateConfig } from '../config/schema'
import type { Logger } from '../log'
import { nextAttemptDelay } from '../spool/backoff'
import { SpoolWriteError } from '../spool/errors'
import type { SpoolEntry } from '../spool/format'
import type { SpoolStore } from '../spool/store'
import { bounceReplies, lastErrors } from './accept'
import type { BounceSender } from './bounce'
import type { Relay } from './relay'

export type SpoolSettings = MxgateConfig['spool']

export interface SpoolRunnerDeps {
  spool: SpoolStore
  relay: Relay
  bounces: BounceSender
  settings: SpoolSettings
  log: Logger
  /** Claim owner name (node and pid): several processes may share one spool directory. */
  owner: string
  /** Rescan the directory before each round: other processes write to it too. The runner also rescans when it
   * finds other processes in the directory (SpoolStore.sharedWithOthers), configured or not. */
  shared: boolean
}

export interface SpoolCounters {
  delivered: number
  retried: number
  bounced: number
  expired: number
  /** Rounds finished: each looked at every message due then. A runner that stopped counting is stuck. */
  rounds: number
  /** Messages picked up (claimed or tried to) for delivery, expiry or a DSN; `running` of them not finished yet. */
  pickups: number
  running: number
}

export class SpoolRunner {
  private timer: NodeJS.Timeout | null = null
  private running = 0
  private tokens: number
  private lastRefill = Date.now()
  private lastBounceScan = 0
  private busy = false
  /** A round was asked for while one ran: run another right after. */
  private again = false
  private tokenTimer: NodeJS.Timeout | null = null
  private stopped = false
  private readonly counts = { delivered: 0, retried: 0, bounced: 0, expired: 0, rounds: 0, pickups: 0 }
  /** Resolves when the current round and its deliveries are done (for tests and shutdown). */
  private inflight = new Set<Promise<void>>()

  constructor(private readonly deps: SpoolRunnerDeps) {
    this.tokens = deps.settings.drainRate
  }

  get counters(): Readonly<SpoolCounters> {
    return { ...this.counts, running: this.running }
  }

  start(): void {
    this.timer = setInterval(() => this.round(), 1000)
    this.timer.unref()
  }

  /** Run a round now (a backend was admitted again, an operator flushed). */
  wake(): void {
    setImmediate(() => this.round())
  }

  /** Make one message (or all) due now; resolves how many. */
  async flush(id?: string): Promise<number> {
    const { spool } = this.deps
    const targets = id === undefined ? spool.list().filter((e) => !e.held && e.pending.length > 0) : [spool.get(id)]
    let n = 0
    for (const e of targets) {
      if (!e) continue
      await spool.update(e.id, { nextAttemptAt: Date.now() })
      n++
    }
    this.wake()
    return n
  }

  /** Several processes on this spool: configured workers, or others found in the directory (checked each time). */
  private async shared(): Promise<boolean> {
    return this.deps.shared || (await this.deps.spool.sharedWithOthers())
  }

  private refill(): void {
    const now = Date.now()
    const rate = this.deps.settings.drainRate
    this.tokens = Math.min(rate, this.tokens + ((now - this.lastRefill) / 1000) * rate)
    this.lastRefill = now
  }

  private round(): void {
    if (this.stopped) return
    if (this.busy) {
      this.again = true
      return
    }
    this.busy = true
    const p = this.fill()
      .catch((err: unknown) => this.deps.log.error({ err }, 'spool round failed'))
      .finally(() => {
        this.counts.rounds++
        this.busy = false
        if (this.again) {
          this.again = false
          this.round()
        }
      })
    this.track(p)
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p)
    p.finally(() => this.inflight.delete(p)).catch(() => {})
  }

  private async fill(): Promise<void> {
    const { spool, settings } = this.deps
    if (await this.shared()) await spool.refresh()
    this.refill()
    const room = Math.min(settings.concurrency - this.running, Math.floor(this.tokens))
    if (room > 0) {
      for (const entry of spool.due(Date.now(), room)) {
        this.tokens -= 1
        this.launch(entry)
      }
    } else if (this.tokens < 1 && this.tokenTimer === null && spool.due(Date.now(), 1).length > 0) {
      // Out of tokens with work waiting: come back when the next token is there, not at the next tick.
      this.tokenTimer = setTimeout(
        () => {
          this.tokenTimer = null
          this.round()
        },
        Math.ceil(((1 - this.tokens) / settings.drainRate) * 1000),
      )
      this.tokenTimer.unref()
    }
    // Messages whose recipients are all settled but which still owe their sender a DSN.
    if (Date.now() - this.lastBounceScan > 5000) {
      this.lastBounceScan = Date.now()
      for (const entry of spool.list()) {
        if (this.running >= settings.concurrency) break
        if (!entry.held && entry.pending.length === 0) this.launch(entry)
      }
    }
  }

  private launch(entry: SpoolEntry): void {
    this.running++
    this.counts.pickups++
    const p = this.process(entry)
      .catch((err: unknown) => this.deps.log.error({ id: entry.id, err }, 'spool delivery failed'))
      .finally(() => {
        this.running--
        // Keep the pipe full: start the next due message now rather than at the next tick.
        this.round()
      })
    this.track(p)
  }

  private async process(stale: SpoolEntry): Promise<void> {
    const { spool, log, owner } = this.deps
    const claim = await spool.claim(stale.id, owner)
    if (!claim) return
    try {
      // Another process may have progressed it between our index and the claim.
      if (await this.shared()) await spool.refresh()
      const entry = spool.get(stale.id)
      // Gone, or held meanwhile (by an operator, through this node or another one on the same directory).
      if (!entry || entry.held) return
      const body = await spool.readBody(entry.id)
      if (entry.pending.length === 0) return await this.settleBounces(entry, body)
      if (Date.now() - entry.receivedAt > this.deps.settings.lifetimeMs) return await this.expire(entry, body)

      const result = await this.deps.relay.relay({
        id: entry.id,
        envelope: { from: entry.from, to: entry.pending },
        body,
        receivedAt: entry.receivedAt,
      })
      const delivered = result.deliveries.flatMap((d) => d.recipients)
      const pending = result.outcome === 'deferred' ? result.pending : []
      const refusedNow =
        result.outcome === 'rejected'
          ? entry.pending.filter((r) => !delivered.includes(r)).map((rcpt) => ({ rcpt, reply: result.reply }))
          : result.refused
      const bounced = [...entry.bounced, ...bounceReplies(refusedNow)]
      const attempts = entry.attempts + 1
      const settled = { done: [...entry.done, ...delivered], bounced }
      if (pending.length === 0) {
        this.counts.delivered += delivered.length > 0 ? 1 : 0
        log.info(
          { id: entry.id, delivered, refused: refusedNow.map((r) => r.rcpt), attempts },
          'spooled message settled',
        )
        let updated: SpoolEntry = { ...entry, ...settled, pending: [], attempts }
        if (bounced.length > 0) {
          // Record the progress before the DSN goes out, so a crash in between sends the DSN, not the mail again.
          // On a full disk that record cannot be made: carry on from memory (a crash would then mean a duplicate).
          try {
            updated = await spool.update(entry.id, { ...settled, pending: [], attempts })
          } catch (err) {
            if (!(err instanceof SpoolWriteError)) throw err
            log.warn({ id: entry.id, err }, 'could not record delivery progress; sending the DSN anyway')
          }
        }
        // Nothing left to do for it: removing the file is the record (and needs no free space).
        return await this.settleBounces(updated, body)
      }
      this.counts.retried++
      const delay = nextAttemptDelay(attempts, {
        firstMs: this.deps.settings.retryFirstMs,
        maxMs: this.deps.settings.retryMaxMs,
        jitter: 0.5,
      })
      await spool.update(entry.id, {
        ...settled,
        pending,
        attempts,
        nextAttemptAt: Date.now() + delay,
        lastErrors: [...entry.lastErrors, ...lastErrors(result.attempts)].slice(-10),
      })
      log.info(
        {
          id: entry.id,
          pending: pending.length,
          attempts,
          retryInMs: delay,
          reason: result.outcome === 'deferred' ? result.reason : null,
        },
        'spooled message deferred',
      )
    } finally {
      await spool.release(claim)
    }
  }

  /** All recipients settled: send the DSN owed for refused ones (if any), then forget the message. */
  private async settleBounces(entry: SpoolEntry, body: Buffer): Promise<void> {
    const { spool, bounces, log } = this.deps
    if (entry.bounced.length > 0) {
      const r = await bounces.send(entry, body, entry.bounced)
      if (!r.sent && !('skipped' in r)) {
        log.warn({ id: entry.id, error: r.error }, 'holding a message whose DSN could not be sent')
        await spool.update(entry.id, {
          held: true,
          lastErrors: [
            ...entry.lastErrors,
            { backendId: 'bounce-relay', stage: 'dsn', message: r.error, at: Date.now() },
          ],
        })
        return
      }
      if (r.sent) this.counts.bounced++
    }
    await spool.remove(entry.id)
  }

  /** The message outlived spool.lifetime: hold it for an operator, or bounce what is left. */
  private async expire(entry: SpoolEntry, body: Buffer): Promise<void> {
    const { spool, settings, log } = this.deps
    this.counts.expired++
    if (settings.onExpiry === 'hold') {
      log.warn({ id: entry.id, pending: entry.pending }, 'spooled message expired; held for an operator')
      await spool.update(entry.id, { held: true })
      return
    }
    await this.bounceNow(entry, body, 'delivery time expired', '4.4.7')
  }

  /**
   * Gives up on every pending recipient: one DSN (with the recipients already refused), then removal. `status` is
   * 4.4.7 for an expired message; an operator's bounce is a plain permanent failure (5.0.0).
   */
  async bounceNow(entry: SpoolEntry, body: Buffer, why: string, status = '5.0.0'): Promise<void> {
    const failed = entry.pending.map((rcpt) => ({ rcpt, reply: why, status }))
    const all = [...entry.bounced.map((b) => ({ ...b })), ...failed]
    const r = await this.deps.bounces.send(entry, body, all)
    if (!r.sent && !('skipped' in r)) {
      await this.deps.spool.update(entry.id, { held: true })
      throw new Error(r.error)
    }
    if (r.sent) this.counts.bounced++
    await this.deps.spool.remove(entry.id)
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    if (this.tokenTimer) clearTimeout(this.tokenTimer)
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
  }
}
