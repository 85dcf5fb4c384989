// Delivers spooled mail through the same relay as live mail: on a backoff schedule, drained at once (rate-limited)
// when a backend is admitted and at start, with per-recipient progress, DSNs for permanent refusals, and a lifetime.
// Progress the disk refuses to record is kept in memory, with the message's claim, until a retry writes it.
import type { MxgateConfig } from '../config/schema'
import type { Logger } from '../log'
import { nextAttemptDelay } from '../spool/backoff'
import { SpoolNotFoundError } from '../spool/errors'
import type { SpoolEntry } from '../spool/format'
import { HELD_DSN_STAGE, heldDsnToDrop, isHeldDsn } from '../spool/held-dsn'
import type { Claim, EntryPatch, SpoolStore } from '../spool/store'
import { bounceReplies, lastErrors } from './accept'
import type { BounceSender } from './bounce'
import type { JournalPort, Relay } from './relay'
import { SpoolPicker } from './spool-picker'

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
  /** Told of what backends took (the replay journal). */
  journal?: JournalPort | null
}

export interface SpoolCounters {
  delivered: number
  retried: number
  bounced: number
  expired: number
  /** Held DSN-only messages given up (past held_dsn_lifetime, or beyond held_dsn_max). */
  dsnDropped: number
  /** Claims lost to another process (the message was being delivered elsewhere). */
  claimsLost: number
  /**
   * Duplicates this runner knows it caused: a claim taken over while this runner delivered (its lease ran out; the
   * new holder may deliver the same recipients), and messages whose delivery progress was still only in memory at
   * stop (the next start delivers them again to recipients that already have them).
   */
  takenOver: number
  unsavedAtStop: number
  /** Rounds finished: each looked at every message due then. A runner that stopped counting is stuck. */
  rounds: number
  /** Messages picked up (claimed or tried to) for delivery, expiry or a DSN; `running` of them not finished yet. */
  pickups: number
  running: number
}

/** After losing a message's claim to another process, leave it alone this long (no futile claims, no tokens). */
const CLAIM_LOST_BACKOFF_MS = 1000
/** After a delivery threw (a read error, a bug), leave the message alone this long rather than re-launch it. */
const FAILED_BACKOFF_MS = 5000
/** Writing progress the disk refused: first retry after this, doubling to SAVE_RETRY_MAX_MS. */
const SAVE_RETRY_FIRST_MS = 500
const SAVE_RETRY_MAX_MS = 30_000
/** How often settled messages that still owe a DSN, and the held DSN-only ones, are looked at. */
const BOUNCE_SCAN_MS = 5000

interface Unsaved {
  claim: Claim
  tries: number
  timer: NodeJS.Timeout | null
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
  private readonly counts: Omit<SpoolCounters, 'running'> = {
    delivered: 0,
    retried: 0,
    bounced: 0,
    expired: 0,
    dsnDropped: 0,
    claimsLost: 0,
    takenOver: 0,
    unsavedAtStop: 0,
    rounds: 0,
    pickups: 0,
  }
  /** Resolves when the current round and its deliveries are done (for tests and shutdown). */
  private inflight = new Set<Promise<void>>()
  /** Which messages to start next; knows which ones this runner works on now and which it backs off from. */
  private readonly picker: SpoolPicker
  /** Messages whose progress only exists in memory: we keep their claim until a retry writes it. */
  private readonly unsaved = new Map<string, Unsaved>()

  constructor(private readonly deps: SpoolRunnerDeps) {
    this.tokens = deps.settings.drainRate
    this.picker = new SpoolPicker(deps.spool)
  }

  get counters(): Readonly<SpoolCounters> {
    return { ...this.counts, running: this.running }
  }

  start(): void {
    const { bounces, settings, log } = this.deps
    if (!bounces.configured) {
      log.warn(
        { heldDsnMax: settings.heldDsnMax, heldDsnLifetimeMs: settings.heldDsnLifetimeMs },
        'spool.bounce_relay is not set: messages that owe a DSN are held (at most spool.held_dsn_max, for at most spool.held_dsn_lifetime) and then dropped without one; set bounce_relay to a smarthost',
      )
    }
    this.timer = setInterval(() => this.round(), 1000)
    this.timer.unref()
  }

  /** Run a round now (an operator released a message). */
  wake(): void {
    setImmediate(() => this.round())
  }

  /**
   * Try every spooled message now, whatever its schedule, at drain_rate and within concurrency: at start and when a
   * backend is admitted again (mail should not wait out a retry interval when a backend can take it).
   */
  drain(): number {
    const ids = this.deps.spool
      .list()
      .filter((e) => !e.held && e.pending.length > 0)
      .sort(oldestFirst)
      .map((e) => e.id)
    this.picker.drain(ids)
    this.wake()
    return ids.length
  }

  /**
   * Make one message (or all) due now; resolves how many. Nothing is written: the messages join the drain of this
   * node (no envelope write that could race another process's delivery, and it works on a full disk).
   */
  async flush(id?: string): Promise<number> {
    const { spool } = this.deps
    if (id === undefined) return this.drain()
    const e = spool.get(id)
    if (!e || e.held || e.pending.length === 0) return 0
    this.picker.drain([id])
    this.wake()
    return 1
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
    await spool.retryUnreadable()
    this.refill()
    const now = Date.now()
    const room = Math.min(settings.concurrency - this.running, Math.floor(this.tokens))
    if (room > 0) {
      for (const entry of this.picker.pick(now, room)) {
        this.tokens -= 1
        this.launch(entry)
      }
    } else if (this.tokens < 1 && this.tokenTimer === null && this.picker.pick(now, 1).length > 0) {
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
    // Messages whose recipients are all settled but which still owe their sender a DSN, and those held for one.
    if (Date.now() - this.lastBounceScan > BOUNCE_SCAN_MS) {
      this.lastBounceScan = Date.now()
      for (const entry of spool.list()) {
        if (this.running >= settings.concurrency) break
        if (!entry.held && entry.pending.length === 0 && this.picker.free(entry, now)) this.launch(entry)
      }
      await this.pruneHeldDsn(now)
    }
  }

  private launch(entry: SpoolEntry): void {
    if (!this.picker.begin(entry.id)) return
    this.running++
    this.counts.pickups++
    const p = this.process(entry)
      .catch((err: unknown) => {
        // Not at once again: a read error or a bug would otherwise spin on this message.
        this.picker.backOff(entry.id, Date.now() + FAILED_BACKOFF_MS)
        this.deps.log.error({ id: entry.id, err }, 'spool delivery failed')
      })
      .finally(() => {
        this.running--
        this.picker.end(entry.id)
        // Keep the pipe full: start the next due message now rather than at the next tick.
        this.round()
      })
    this.track(p)
  }

  /** Take the message's claim, or reuse the one kept for its unsaved progress; null when another process has it. */
  private async take(id: string): Promise<Claim | null> {
    const kept = this.unsaved.get(id)
    if (kept) {
      if (kept.timer) clearTimeout(kept.timer)
      this.unsaved.delete(id)
      return kept.claim
    }
    const claim = await this.deps.spool.claim(id, this.deps.owner)
    if (!claim) {
      // Someone else is delivering it. Give the token back and leave the message alone for a moment.
      this.counts.claimsLost++
      this.tokens = Math.min(this.deps.settings.drainRate, this.tokens + 1)
      this.picker.backOff(id, Date.now() + CLAIM_LOST_BACKOFF_MS)
    }
    return claim
  }

  /** Release the claim, unless the message has progress only in memory: then keep it and retry the write. */
  private async finish(id: string, claim: Claim, tries = 0): Promise<void> {
    const { spool } = this.deps
    if (spool.isUnsaved(id) && this.stopped) await this.lastSave(id)
    if (!spool.isUnsaved(id) || this.stopped) {
      if (!(await spool.release(claim))) this.counts.takenOver++
      return
    }
    const delay = nextAttemptDelay(tries + 1, { firstMs: SAVE_RETRY_FIRST_MS, maxMs: SAVE_RETRY_MAX_MS, jitter: 0.5 })
    const kept: Unsaved = { claim, tries: tries + 1, timer: null }
    kept.timer = setTimeout(() => this.retrySave(id, kept), delay)
    kept.timer.unref()
    this.unsaved.set(id, kept)
  }

  private retrySave(id: string, kept: Unsaved): void {
    if (this.unsaved.get(id) !== kept || this.stopped) return
    kept.timer = null
    if (!this.picker.begin(id)) {
      this.finishLater(id, kept)
      return
    }
    this.unsaved.delete(id)
    const p = this.deps.spool
      .saveUnsaved(id)
      .catch((err: unknown) => {
        if (!(err instanceof SpoolNotFoundError)) this.deps.log.error({ id, err }, 'saving spool progress failed')
        return true
      })
      .then(async (saved) => {
        if (!saved) return this.finish(id, kept.claim, kept.tries)
        if (!(await this.deps.spool.release(kept.claim))) this.counts.takenOver++
      })
      .finally(() => this.picker.end(id))
    this.track(p)
  }

  /** The message is being delivered right now (from memory, with the kept claim): look again later. */
  private finishLater(id: string, kept: Unsaved): void {
    kept.timer = setTimeout(() => this.retrySave(id, kept), SAVE_RETRY_FIRST_MS)
    kept.timer.unref()
  }

  /** Writes `patch`; when the disk refuses, the progress stays in memory (the claim is kept until it is written). */
  private async record(id: string, patch: EntryPatch): Promise<SpoolEntry> {
    return (await this.deps.spool.record(id, patch)).entry
  }

  private async process(stale: SpoolEntry): Promise<void> {
    const { spool, log } = this.deps
    const fromMemory = spool.isUnsaved(stale.id)
    const claim = await this.take(stale.id)
    if (!claim) return
    try {
      // Another process may have progressed it between our index and the claim (not when our memory is newer).
      if (!fromMemory && (await this.shared())) await spool.refresh()
      const entry = spool.get(stale.id)
      // Gone, or held meanwhile (by an operator, through this node or another one on the same directory).
      if (!entry || entry.held) return
      const body = await spool.readBody(entry.id)
      if (entry.pending.length === 0) return await this.settleBounces(entry, body)
      if (Date.now() - entry.receivedAt > this.deps.settings.lifetimeMs) return await this.expire(entry, body)

      const msg = {
        id: entry.id,
        envelope: { from: entry.from, to: entry.pending },
        body,
        receivedAt: entry.receivedAt,
      }
      const result = await this.deps.relay.relay(msg, undefined, entry.avoid)
      if (result.deliveries.length > 0) this.deps.journal?.delivered(msg, result.deliveries)
      const delivered = result.deliveries.flatMap((d) => d.recipients)
      const pending = result.outcome === 'deferred' ? result.pending : []
      // Each refused recipient carries its own reply; a rejected message's one reply stands in only for a recipient
      // the relay named none for.
      const refusedNow = [...result.refused]
      if (result.outcome === 'rejected') {
        for (const rcpt of entry.pending) {
          if (!delivered.includes(rcpt) && !refusedNow.some((r) => r.rcpt === rcpt)) {
            refusedNow.push({ rcpt, reply: result.reply })
          }
        }
      }
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
        // Record the progress before the DSN goes out, so a crash in between sends the DSN, not the mail again.
        // On a full disk that record cannot be made: carry on from memory (a crash would then mean a duplicate).
        if (bounced.length > 0) updated = await this.record(entry.id, { ...settled, pending: [], attempts })
        // Nothing left to do for it: removing the file is the record (and needs no free space).
        return await this.settleBounces(updated, body)
      }
      this.counts.retried++
      const delay = nextAttemptDelay(attempts, {
        firstMs: this.deps.settings.retryFirstMs,
        maxMs: this.deps.settings.retryMaxMs,
        jitter: 0.5,
      })
      // Whatever happens to this write, the delivered recipients are never sent again from this process: a failed
      // write keeps the progress in memory (and the claim, so no other process retries from the old envelope).
      await this.record(entry.id, {
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
      await this.finish(stale.id, claim)
    }
  }

  /** All recipients settled: send the DSN owed for refused ones (if any), then forget the message. */
  private async settleBounces(entry: SpoolEntry, body: Buffer): Promise<void> {
    const { spool, bounces, log } = this.deps
    if (entry.bounced.length > 0) {
      const r = await bounces.send(entry, body, entry.bounced)
      if (!r.sent && !('skipped' in r)) {
        log.warn({ id: entry.id, error: r.error }, 'holding a message whose DSN could not be sent')
        await this.record(entry.id, {
          held: true,
          lastErrors: [
            ...entry.lastErrors,
            { backendId: 'bounce-relay', stage: HELD_DSN_STAGE, message: r.error, at: Date.now() },
          ],
        })
        // Bound the held ones at once rather than at the next scan.
        this.lastBounceScan = 0
        return
      }
      if (r.sent) this.counts.bounced++
    }
    await spool.remove(entry.id)
  }

  /**
   * Messages held only for their DSN have their own bound (held_dsn_max, oldest first) and lifetime
   * (held_dsn_lifetime): past either, the DSN is given up and the message removed, with a log line naming the
   * sender and the recipients who were not reported.
   */
  private async pruneHeldDsn(now: number): Promise<void> {
    const { spool, settings, log, owner } = this.deps
    const limits = { max: settings.heldDsnMax, lifetimeMs: settings.heldDsnLifetimeMs }
    for (const { entry, why } of heldDsnToDrop(spool.list(), limits, now)) {
      if (this.picker.isActive(entry.id)) continue
      const claim = await spool.claim(entry.id, owner)
      if (!claim) continue
      try {
        const cur = await spool.reread(entry.id)
        if (!cur || !isHeldDsn(cur)) continue
        await spool.remove(entry.id)
        this.counts.dsnDropped++
        log.warn(
          {
            id: entry.id,
            from: cur.from,
            refused: cur.bounced.map((b) => b.rcpt),
            why,
            heldDsnMax: settings.heldDsnMax,
            heldDsnLifetimeMs: settings.heldDsnLifetimeMs,
          },
          why === 'max'
            ? 'dropped a message held for its DSN: more than spool.held_dsn_max are held; its sender is not told'
            : 'dropped a message held for its DSN: held longer than spool.held_dsn_lifetime; its sender is not told',
        )
      } finally {
        await spool.release(claim)
      }
    }
  }

  /** The message outlived spool.lifetime: hold it for an operator, or bounce what is left. */
  private async expire(entry: SpoolEntry, body: Buffer): Promise<void> {
    const { settings, log } = this.deps
    this.counts.expired++
    if (settings.onExpiry === 'hold') {
      log.warn({ id: entry.id, pending: entry.pending }, 'spooled message expired; held for an operator')
      await this.record(entry.id, { held: true })
      return
    }
    await this.bounceNow(entry, body, 'delivery time expired', '4.4.7')
  }

  /**
   * An operator's `spool bounce`: claims the message first, then reads its newest envelope (another process may
   * have delivered some recipients meanwhile) and bounces what is still pending.
   */
  async bounce(id: string, why: string): Promise<void> {
    const { spool } = this.deps
    if (!this.picker.begin(id)) throw new SpoolBusyError(id)
    try {
      // The claim kept for progress not yet on disk, if any; else a fresh one.
      const claim = await this.take(id)
      if (!claim) throw new SpoolBusyError(id)
      try {
        const entry = spool.isUnsaved(id) ? spool.get(id) : await spool.reread(id)
        if (!entry) throw new SpoolNotFoundError(id)
        const body = await spool.readBody(id)
        await this.bounceNow(entry, body, why)
      } finally {
        await this.finish(id, claim)
      }
    } finally {
      this.picker.end(id)
    }
  }

  /**
   * Gives up on every pending recipient: one DSN (with the recipients already refused), then removal. `status` is
   * 4.4.7 for an expired message; an operator's bounce is a plain permanent failure (5.0.0). The caller holds the
   * message's claim.
   */
  async bounceNow(entry: SpoolEntry, body: Buffer, why: string, status = '5.0.0'): Promise<void> {
    const failed = entry.pending.map((rcpt) => ({ rcpt, reply: why, status }))
    const all = [...entry.bounced.map((b) => ({ ...b })), ...failed]
    const r = await this.deps.bounces.send(entry, body, all)
    if (!r.sent && !('skipped' in r)) {
      // The pending recipients are given up all the same: what is left is a DSN owed, held like any other (within
      // held_dsn_max and held_dsn_lifetime). The status goes into the reply text, where the DSN will find it.
      await this.record(entry.id, {
        held: true,
        pending: [],
        bounced: [...entry.bounced, ...failed.map((f) => ({ rcpt: f.rcpt, reply: `${f.status} ${f.reply}` }))],
        lastErrors: [
          ...entry.lastErrors,
          { backendId: 'bounce-relay', stage: HELD_DSN_STAGE, message: r.error, at: Date.now() },
        ],
      })
      this.lastBounceScan = 0
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
    // Progress still only in memory: one last try, then let the claims go (a restart may then repeat a delivery).
    for (const [id, kept] of [...this.unsaved]) {
      if (kept.timer) clearTimeout(kept.timer)
      this.unsaved.delete(id)
      await this.lastSave(id)
      if (!(await this.deps.spool.release(kept.claim).catch(() => true))) this.counts.takenOver++
    }
  }

  private async lastSave(id: string): Promise<void> {
    const saved = await this.deps.spool.saveUnsaved(id).catch(() => false)
    if (!saved) {
      this.counts.unsavedAtStop++
      this.deps.log.warn(
        { id },
        'stopping with delivery progress not on disk: recipients already delivered may get this message again',
      )
    }
  }
}

/** The message is being delivered (or changed) right now, by this process or another one on the same spool. */
export class SpoolBusyError extends Error {
  readonly code = 'ESPOOLBUSY' as const
  constructor(readonly id: string) {
    super(`message ${id} is being delivered right now; try again in a moment`)
    this.name = 'SpoolBusyError'
  }
}

function oldestFirst(a: SpoolEntry, b: SpoolEntry): number {
  return a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}
