// End-to-end canaries: every `canary.interval`, one token message through each backend in rotation on a fresh
// session; its token must come back (SMTP to the return address, or the webhook) within `canary.timeout`. A loss
// is evidence for the canary judge (src/health/canary-judge.ts), which may eject the backend through the health
// port. Canaries bypass the relay, the breaker and the outcome counters: they count only in their own metrics.
import { EventEmitter } from 'node:events'
import type { DeliveryAttempt } from '../backend/outcome'
import { replyText } from '../backend/outcome'
import type { CanaryEvidence, CanaryJudge, PeerView } from '../health/canary-judge'
import type { Logger } from '../log'
import type { Envelope } from '../message'
import { canaryBody } from './message'
import { newToken, type PendingCanary, PendingTokens } from './tokens'

export interface CanarySettings {
  address: string
  intervalMs: number
  timeoutMs: number
  /** How long one canary's delivery may take (the relay's deadline). */
  sendDeadlineMs: number
  hostname: string
}

/** What the scheduler needs from the rest of mxgate; the engine fills it in. */
export interface CanaryPorts {
  /** Every configured backend; `inRotation` = admitted or in probation, no operator override. */
  backends(): PeerView[]
  /** One message on a fresh session to this backend. Never rejects. */
  send(id: string, envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt>
  /** Takes the backend out on canary evidence, within the ejection budget; says why it did not when it did not. */
  eject(id: string, evidence: CanaryEvidence): { ejected: true } | { ejected: false; why: string }
  /** A canary came back (probation counts them). */
  returned(id: string): void
  /** The cluster's processes share tokens through the state store: a return may reach any of them. */
  shared: SharedReturns
  log: Logger
  now?: () => number
}

/** Sharing a return found: a process had sent the token, none had, it came back before, or no answer (kept). */
export type ShareResult = 'claimed' | 'unknown' | 'repeated' | 'unreachable'

/** The state store's canary part (src/cluster/types.ts StateStore.canary*), filled in by the engine. */
export interface SharedReturns {
  sent(token: string, ttlMs: number): void
  returned(token: string, at: number, ttlMs: number): Promise<ShareResult>
  /**
   * When another process reported it back. null: nobody did; undefined: no evidence either way (the store cannot
   * be asked, or was away at some time since `since`, so a return may be waiting in another node to be shared).
   */
  returnOf(token: string, since: number): Promise<number | null | undefined>
}

/** Shared entries outlive the canary's own deadline by this much (clocks, the sender's tick, one lookup). */
const SHARE_SLACK_MS = 5000

export interface CanaryStats {
  sent: number
  returned: number
  lost: number
  /** Past their timeout while the state store could not be asked whether another node got them back: no evidence. */
  unjudged: number
  /** Not taken with 250 (refused, timed out): not a canary on its way, and not a fault charged to the backend here. */
  failed: number
  pending: number
  /** The last round trip (250 → token back), ms; null before the first. */
  lastRoundTripMs: number | null
  /** The loss statistic now, and the backend's loss rate over its last canaries. */
  statistic: number
  lossRate: number | null
}

export interface CanaryEvents {
  sent: [string]
  failed: [string, DeliveryAttempt]
  returned: [string, number]
  lost: [string]
  unjudged: [string]
  /** A token no process of the cluster sent, or one that came back again or late. */
  unknown: [string]
}

export type ReturnOutcome =
  | { kind: 'returned'; backendId: string; roundTripMs: number }
  | { kind: 'unknown' }
  | { kind: 'off' }

export class CanaryScheduler extends EventEmitter<CanaryEvents> {
  private readonly tokens: PendingTokens
  private readonly stats = new Map<string, Omit<CanaryStats, 'pending' | 'statistic' | 'lossRate'>>()
  private readonly sending = new Set<string>()
  private timer: NodeJS.Timeout | null = null
  private nextRoundAt = 0
  private readonly now: () => number
  /** Bumped per backend at each ejection: a judgement still asking the store about an older canary is dropped. */
  private readonly epochs = new Map<string, number>()
  /** Backends whose held-back alarm was said (once per episode). */
  private readonly held = new Set<string>()

  constructor(
    readonly settings: CanarySettings,
    private readonly judge: CanaryJudge,
    private readonly ports: CanaryPorts,
  ) {
    super()
    this.tokens = new PendingTokens(settings.timeoutMs)
    this.now = ports.now ?? Date.now
  }

  start(): void {
    if (this.timer) return
    // Sends are due every interval; losses are noticed within a fraction of the shorter of the two.
    const tick = Math.max(20, Math.min(500, this.settings.intervalMs / 4, this.settings.timeoutMs / 4))
    this.nextRoundAt = this.now()
    this.timer = setInterval(() => this.tick(), tick)
    this.timer.unref()
    this.ports.log.info(
      { address: this.settings.address, intervalMs: this.settings.intervalMs, timeoutMs: this.settings.timeoutMs },
      'canaries on',
    )
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /** The backend was ejected (by anyone): its canaries on their way no longer count, its evidence starts over. */
  ejected(id: string): void {
    this.epochs.set(id, (this.epochs.get(id) ?? 0) + 1)
    this.tokens.forget(id)
    this.judge.reset(id)
  }

  /** A reload removed the backend: its canaries and evidence go, and its counts with it. */
  forget(id: string): void {
    this.ejected(id)
    this.stats.delete(id)
    this.epochs.delete(id)
    this.held.delete(id)
  }

  private stat(id: string) {
    let s = this.stats.get(id)
    if (!s) {
      s = { sent: 0, returned: 0, lost: 0, unjudged: 0, failed: 0, lastRoundTripMs: null }
      this.stats.set(id, s)
    }
    return s
  }

  view(id: string): CanaryStats {
    return {
      ...this.stat(id),
      pending: this.tokens.count(id),
      statistic: this.judge.statistic(id),
      lossRate: this.judge.lossRate(id),
    }
  }

  /** One look: send the round when it is due, act on canaries past their deadline. Public for tests. */
  tick(now = this.now()): void {
    if (now >= this.nextRoundAt) {
      this.nextRoundAt = now + this.settings.intervalMs
      for (const b of this.ports.backends()) if (b.inRotation && !this.sending.has(b.id)) this.sendOne(b.id, now)
    }
    for (const c of this.tokens.expire(now)) if (c.accepted) this.judgeExpired(c)
  }

  /** Past its timeout here: lost, unless another process got it back (and this one missed the note). */
  private judgeExpired(c: PendingCanary): void {
    const epoch = this.epochs.get(c.backendId) ?? 0
    this.ports.shared
      .returnOf(c.token, c.acceptedAt)
      .catch(() => undefined)
      .then((at) => {
        if ((this.epochs.get(c.backendId) ?? 0) !== epoch) return
        if (typeof at === 'number') this.count(c, at, this.now(), 'the store')
        else if (at === null) this.onLost(c.backendId, c.token, c.acceptedAt, this.now())
        else this.onUnjudged(c)
      })
      .catch((err: unknown) => this.ports.log.error({ err, backend: c.backendId }, 'canary judgement crashed'))
  }

  private onUnjudged(c: PendingCanary): void {
    this.stat(c.backendId).unjudged++
    this.emit('unjudged', c.backendId)
    this.ports.log.info(
      { backend: c.backendId, token: c.token },
      `canary ${c.token} through ${c.backendId} not back here and the state store cannot say whether another node got it: no evidence either way`,
    )
  }

  private sendOne(id: string, now: number): void {
    const token = newToken()
    const deadlineAt = now + this.settings.sendDeadlineMs
    this.tokens.add(token, id, now, deadlineAt)
    this.ports.shared.sent(token, this.settings.sendDeadlineMs + this.settings.timeoutMs + SHARE_SLACK_MS)
    this.sending.add(id)
    const body = canaryBody({
      token,
      backendId: id,
      to: this.settings.address,
      hostname: this.settings.hostname,
      now: new Date(now),
    })
    this.ports
      .send(id, { from: '', to: [this.settings.address] }, body, deadlineAt)
      .then((attempt) => {
        if (attempt.ok) {
          this.stat(id).sent++
          this.emit('sent', id)
          this.tokens.accepted(token, this.now())
          return
        }
        this.tokens.drop(token)
        this.stat(id).failed++
        this.emit('failed', id, attempt)
        const why = attempt.failure?.message ?? attempt.refused.map((r) => replyText(r.reply)).join('; ')
        this.ports.log.info({ backend: id, token, why }, `canary through ${id} not accepted: ${why}`)
      })
      .catch((err: unknown) => this.ports.log.error({ err, backend: id }, 'canary send crashed'))
      .finally(() => this.sending.delete(id))
  }

  /** A token came back to this process (SMTP return or webhook). Not sent here: the other processes are told. */
  returned(token: string): ReturnOutcome {
    const now = this.now()
    const r = this.tokens.returned(token, now)
    if (r.kind === 'returned') return this.count(r.canary, now, now, null)
    if (this.tokens.settled(token)) {
      this.noteUnknown(token, 'came back again or after its timeout')
      return r
    }
    this.ports.shared
      .returned(token, now, this.settings.timeoutMs + SHARE_SLACK_MS)
      .then((result) => {
        if (result === 'unknown' || result === 'repeated')
          this.noteUnknown(token, result === 'unknown' ? 'no node sent it' : 'came back again')
        else if (result === 'unreachable')
          this.ports.log.debug({ token }, 'canary token of another node kept here until the state store is back')
        else if (this.ports.log.isLevelEnabled('debug'))
          this.ports.log.debug({ token }, 'canary token of another node passed on to it')
      })
      .catch((err: unknown) => this.ports.log.error({ err, token }, 'sharing a canary return crashed'))
    return r
  }

  /** Another process of the cluster got a token back: counted here if this process sent it. */
  returnedElsewhere(token: string, at: number): void {
    const now = this.now()
    const r = this.tokens.returned(token, now)
    if (r.kind === 'returned') this.count(r.canary, at, now, 'another process')
  }

  private noteUnknown(token: string, why: string): void {
    this.emit('unknown', token)
    this.ports.log.info({ token }, `canary token returned that no node is waiting for (${why})`)
  }

  /**
   * A canary of this process came back `at` (another process's clock when it came back there; used when it falls
   * between our 250 and now, else now): the round trip is measured from our own 250.
   */
  private count(c: PendingCanary, at: number, now: number, via: string | null): ReturnOutcome {
    const id = c.backendId
    const end = at >= c.acceptedAt && at <= now ? at : now
    const roundTripMs = Math.max(0, end - c.acceptedAt)
    const s = this.stat(id)
    s.returned++
    s.lastRoundTripMs = roundTripMs
    this.judge.returned(id, c.acceptedAt, this.ports.backends())
    this.ports.returned(id)
    this.emit('returned', id, roundTripMs)
    if (this.ports.log.isLevelEnabled('debug'))
      this.ports.log.debug({ backend: id, token: c.token, ms: roundTripMs, via: via ?? 'here' }, 'canary returned')
    return { kind: 'returned', backendId: id, roundTripMs }
  }

  // Never answered 250 within its delivery deadline: the send outcome (failed) tells; it is no loss after 250, and
  // tick() does not bring it here.
  private onLost(id: string, token: string, acceptedAt: number, now: number): void {
    this.stat(id).lost++
    this.emit('lost', id)
    const secs = Math.round(this.settings.timeoutMs / 100) / 10
    this.ports.log.warn(
      { backend: id, token, acceptedAt, fault: 'lost after 250' },
      `canary ${token} through ${id} lost after 250: not back within ${secs}s`,
    )
    const evidence = this.judge.lost(id, acceptedAt, now, this.ports.backends())
    if (evidence === null) {
      this.held.delete(id)
      return
    }
    const done = this.ports.eject(id, evidence)
    if (done.ejected) {
      this.held.delete(id)
      this.ejected(id)
    } else if (!this.held.has(id)) {
      this.held.add(id)
      this.ports.log.warn(
        { backend: id, evidence, why: done.why },
        `canaries would eject ${id} (${done.why}): ${describeCanaryEvidence(evidence)}`,
      )
    }
  }
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`

/** The evidence of a canary alarm in one line: the log, the API and `mxgate status` show it. */
export function describeCanaryEvidence(e: CanaryEvidence): string {
  const pool = e.poolRate === null ? 'n/a' : pct(e.poolRate)
  if (e.rule === 'none-returned')
    return `lost after 250: none of its ${e.faults} canaries since admission came back while its peers' did (rest of the pool loses ${pool})`
  return (
    `lost after 250: ${e.faults} of ${e.messages} canaries never came back (last ones: ${pct(e.rate)} lost) ` +
    `vs the rest of the pool's ${pool}; CUSUM ${e.statistic.toFixed(1)} ≥ ${e.threshold}`
  )
}
