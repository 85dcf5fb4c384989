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
import { newToken, PendingTokens } from './tokens'

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
  log: Logger
  now?: () => number
}

export interface CanaryStats {
  sent: number
  returned: number
  lost: number
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
  /** A token that is not pending (late, duplicate, another node's). */
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
    this.tokens.forget(id)
    this.judge.reset(id)
  }

  private stat(id: string) {
    let s = this.stats.get(id)
    if (!s) {
      s = { sent: 0, returned: 0, lost: 0, failed: 0, lastRoundTripMs: null }
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
    for (const c of this.tokens.expire(now)) this.onLost(c.backendId, c.token, c.acceptedAt, c.accepted, now)
  }

  private sendOne(id: string, now: number): void {
    const token = newToken()
    const deadlineAt = now + this.settings.sendDeadlineMs
    this.tokens.add(token, id, now, deadlineAt)
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

  /** A token came back (SMTP return or webhook). */
  returned(token: string): ReturnOutcome {
    const now = this.now()
    const r = this.tokens.returned(token, now)
    if (r.kind === 'unknown') {
      this.emit('unknown', token)
      this.ports.log.info({ token }, 'canary token returned that is not pending here (late, repeated or not ours)')
      return r
    }
    const id = r.canary.backendId
    const s = this.stat(id)
    s.returned++
    s.lastRoundTripMs = r.roundTripMs
    this.judge.returned(id, r.canary.acceptedAt, this.ports.backends())
    this.ports.returned(id)
    this.emit('returned', id, r.roundTripMs)
    if (this.ports.log.isLevelEnabled('debug'))
      this.ports.log.debug({ backend: id, token, ms: r.roundTripMs }, 'canary returned')
    return { kind: 'returned', backendId: id, roundTripMs: r.roundTripMs }
  }

  private onLost(id: string, token: string, acceptedAt: number, accepted: boolean, now: number): void {
    // Never answered 250 within its delivery deadline: the send outcome (failed) tells; it is no loss after 250.
    if (!accepted) return
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
