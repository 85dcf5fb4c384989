// One message's journey: pick a backend, deliver, classify, fail over, ask a second opinion, give up in time.
// Knows nothing of Haraka; the same code serves live mail and the spool's retries.
import type { DeliveryAttempt, RecipientReply, SmtpReply, Stage } from '../backend/outcome'
import type { MxgateConfig } from '../config/schema'
import type { Logger } from '../log'
import type { Envelope, InboundMessage } from '../message'
import { classifyAttempt, classifyRefusal, type Verdict } from './classify'
import { backendCaused, hasPermanentRefusal, needsConfirmation } from './confirm'
import { Journey } from './journey'

/** A session held for one delivery (see BackendClient.reserve). */
export interface DeliveryLease {
  deliver(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt>
  cancel(): void
}

export interface BackendDeliverer {
  /** A session to deliver on, or the attempt that never started (all of mxgate's sessions to it busy: saturated). */
  reserve(deadlineAt: number): Promise<DeliveryLease | DeliveryAttempt>
  /** Whether the backend offered SMTPUTF8 at its last EHLO; null before the first. */
  readonly smtputf8: boolean | null
}

export interface PoolPort {
  pick(avoid: ReadonlySet<string>): string | null
  begin(id: string): void
  end(id: string): void
}

export interface HealthPort {
  track(
    id: string,
    fn: () => Promise<DeliveryAttempt>,
    faultOf: (a: DeliveryAttempt) => string | null,
    opts?: { settleLater?: boolean },
  ): Promise<DeliveryAttempt | null>
  /** Feeds the breaker only; the shared counts hear about the attempt through settle(). */
  chargeFault(id: string, reason: string): void
  /** Counts one attempt in the shared outcome counters (the detector's evidence), once its verdict is final. */
  settle(id: string, fail: boolean, refused: boolean): void
  /** The backend is under suspicion (probation, trial, or the detector's warning level): its 5xx are not passed on. */
  suspect(id: string): boolean
}

/**
 * Told of every message a backend took, once its sender has (or is about to get) its answer: the replay journal.
 * It must neither throw nor wait: the message is already safe at the backend.
 */
export interface JournalPort {
  delivered(msg: InboundMessage, deliveries: readonly Delivery[]): void
}

export interface AttemptRecord {
  backendId: string
  verdict: Verdict['kind']
  /** Where the attempt ended: the failing stage, rcpt when every recipient was refused there, dot when delivered. */
  stage: Stage
  /** The failing stage and reply/error, or the final reply when delivered. */
  detail: string
  elapsedMs: number
}

export interface Delivery {
  backendId: string
  recipients: string[]
  reply: SmtpReply | null
}

interface Common {
  attempts: AttemptRecord[]
  deliveries: Delivery[]
  /** Recipients refused for good by a backend (the bounce path reports them). */
  refused: RecipientReply[]
}

export type RelayResult =
  | ({ outcome: 'delivered' } & Common)
  /**
   * Nothing delivered and every recipient refused for good, each with its own reply in `refused`. `reply` is the
   * first of them (the sender's one reply after DATA is built from all of them: src/haraka/replies.ts).
   */
  | ({ outcome: 'rejected'; reply: SmtpReply } & Common)
  /**
   * Some recipients are still `pending`: no backend took them in time. `reply` is set when a backend refused them
   * temporarily for the message's own reasons (pass it on); otherwise it was the backends' fault (`reason`).
   */
  | ({ outcome: 'deferred'; pending: string[]; reason: string; reply: SmtpReply | null } & Common)

export type RelaySettings = MxgateConfig['relay']

export interface RelayDeps {
  clients: ReadonlyMap<string, BackendDeliverer>
  pool: PoolPort
  health: HealthPort
  settings: RelaySettings
  log: Logger
  now?: () => number
  /** Sees every attempt (metrics). */
  observe?: (a: AttemptRecord) => void
}

/** What the sender hears when no configured backend can take the envelope at all (RFC 6531 §3.5 for SMTPUTF8). */
const UNSUPPORTED: SmtpReply = {
  code: 553,
  enhanced: '5.6.7',
  lines: ['No mail server here can take this envelope (non-ASCII address without SMTPUTF8 support)'],
}

function describe(a: DeliveryAttempt, v: Verdict): string {
  if (v.kind === 'backend' || v.kind === 'unsupported' || v.kind === 'saturated') return v.reason
  const r = v.kind === 'delivered' ? a.dotReply : v.reply
  return r ? `${r.code} ${r.enhanced ?? ''} ${r.lines[0] ?? ''}`.replace(/\s+/g, ' ').trim() : 'no reply'
}

/**
 * The reply that concerns `rcpt`: its own RCPT refusal when every recipient was refused at RCPT (each may have been
 * refused for a different reason), else the reply to the whole message (MAIL, end of data).
 */
function ownReply(attempt: DeliveryAttempt, rcpt: string, whole: SmtpReply): SmtpReply {
  if (attempt.failure !== null) return whole
  return attempt.refused.find((r) => r.rcpt === rcpt)?.reply ?? whole
}

export class Relay {
  private readonly now: () => number

  constructor(private readonly deps: RelayDeps) {
    this.now = deps.now ?? Date.now
  }

  /**
   * Tries backends for `msg` until every recipient is settled, the attempts run out or the deadline passes. Backends
   * in `avoid` are never picked (a replay of what one of them took).
   */
  async relay(
    msg: InboundMessage,
    deadlineAt = this.now() + this.deps.settings.deadlineMs,
    avoid: readonly string[] = [],
  ): Promise<RelayResult> {
    const { pool, settings } = this.deps
    const j = new Journey(msg.envelope.to, settings.secondOpinion, avoid)
    while (j.pending.length > 0 && j.tries < settings.maxAttempts && this.now() < deadlineAt) {
      const id = pool.pick(j.avoid)
      if (id === null) break
      j.avoid.add(id)
      const tried = await this.attempt(id, { from: msg.envelope.from, to: j.pending }, msg.body, deadlineAt)
      if (tried === null) continue // its breaker opened meanwhile: not an attempt, pick another
      // Waiting on mxgate's own session limit, or a backend that cannot take the envelope, is not trying the
      // backend (nothing was sent): it does not use up max_attempts.
      if (tried.verdict.kind !== 'saturated' && tried.verdict.kind !== 'unsupported') j.tries++
      this.record(j, id, tried.attempt, tried.verdict)
      j.pending = this.settle(j, id, tried.attempt, tried.verdict)
      this.count(j, id, tried.attempt, tried.verdict)
    }
    // Attempts that waited for a second opinion: a fault if another backend took what they refused.
    for (const [id, refused] of j.unsettled) this.deps.health.settle(id, j.charged.has(id), refused)
    return this.finish(j, deadlineAt)
  }

  /**
   * The attempt's count in the shared outcome counters, the detector's evidence: now, or once the second opinion
   * has spoken when this backend's refusal is still waiting for it. Nothing was sent for an unsupported or
   * saturated try: no evidence either way.
   */
  private count(j: Journey, id: string, attempt: DeliveryAttempt, verdict: Verdict): void {
    if (verdict.kind === 'unsupported' || verdict.kind === 'saturated') return
    const asked = j.pending.some((rcpt) => j.ambiguity.get(rcpt)?.backendId === id)
    const fail = backendCaused(attempt, verdict)
    if (!fail && asked) j.unsettled.set(id, hasPermanentRefusal(attempt, verdict))
    else this.deps.health.settle(id, fail, hasPermanentRefusal(attempt, verdict))
  }

  /**
   * A permanent refusal that looks like the message's (5.1.x, 5.2.x, 5.6.x, X.3.4): a broken recipient lookup
   * answers exactly so, hence asked twice (per class, `relay.confirm_permanent`) or whenever the backend is suspect.
   * With a single backend configured there is nobody to ask: its word stands. True when another backend is to be
   * asked.
   */
  private permanent(j: Journey, rcpt: string, id: string, reply: SmtpReply): boolean {
    const { clients, health, settings } = this.deps
    const suspect = health.suspect(id)
    if (clients.size > 1 && (suspect || needsConfirmation(reply, settings.confirmPermanent))) {
      return j.ambiguous(rcpt, id, reply, suspect)
    }
    j.refuse(rcpt, reply)
    return false
  }

  /**
   * Could no configured backend ever take an envelope that needs SMTPUTF8? Only when every one of them, admitted
   * or not (ejected, draining, probing), lacked it at its last EHLO. One that offered it, or was never asked, may
   * take it later: then the message is deferred, not refused.
   */
  private noBackendOffersSmtputf8(): boolean {
    for (const client of this.deps.clients.values()) if (client.smtputf8 !== false) return false
    return true
  }

  /** One delivery to one backend through its breaker; null when the breaker would not let it run. */
  private async attempt(
    id: string,
    envelope: Envelope,
    body: Buffer,
    deadlineAt: number,
  ): Promise<{ attempt: DeliveryAttempt; verdict: Verdict } | null> {
    const { pool, health, clients } = this.deps
    const client = clients.get(id)
    if (!client) throw new Error(`no client for backend ${id}`)
    pool.begin(id)
    try {
      // A session first, outside the breaker: a wait on mxgate's own session limit must not reach the backend's
      // breaker or outcome counts, neither as a fault nor as a success.
      const lease = await client.reserve(deadlineAt)
      if (!('deliver' in lease)) return { attempt: lease, verdict: classifyAttempt(lease) }
      // Classified once, inside the breaker (which needs to know whose fault it was), and reused by the caller.
      const classified: { verdict?: Verdict } = {}
      let attempt: DeliveryAttempt | null = null
      try {
        attempt = await health.track(
          id,
          () => lease.deliver(envelope, body, deadlineAt),
          (a) => {
            const v = classifyAttempt(a)
            classified.verdict = v
            return v.kind === 'backend' ? v.reason : null
          },
          { settleLater: true },
        )
      } finally {
        if (attempt === null) lease.cancel() // the breaker would not let it run: give the session back
      }
      if (attempt === null) return null
      return { attempt, verdict: classified.verdict ?? classifyAttempt(attempt) }
    } finally {
      pool.end(id)
    }
  }

  private record(j: Journey, id: string, attempt: DeliveryAttempt, verdict: Verdict): void {
    const record: AttemptRecord = {
      backendId: id,
      verdict: verdict.kind,
      stage: attempt.failure?.stage ?? (attempt.ok ? 'dot' : 'rcpt'),
      detail: describe(attempt, verdict),
      elapsedMs: attempt.elapsedMs,
    }
    j.attempts.push(record)
    this.deps.observe?.(record)
  }

  /** Settles what the attempt decided; returns the recipients to try on the next backend. */
  private settle(j: Journey, id: string, attempt: DeliveryAttempt, verdict: Verdict): string[] {
    const next: string[] = []
    switch (verdict.kind) {
      case 'delivered':
        this.delivered(j, id, attempt)
        for (const r of attempt.refused) {
          const cls = classifyRefusal(r.reply)
          if (cls === 'message-permanent') {
            if (this.permanent(j, r.rcpt, id, r.reply)) next.push(r.rcpt)
          } else if (cls === 'message-temporary') j.hold(r.rcpt, r.reply)
          else if (cls === 'backend') {
            j.reason = `${id} refused ${r.rcpt}: ${r.reply.code} ${r.reply.enhanced ?? ''}`.trim()
            next.push(r.rcpt)
          } else if (j.ambiguous(r.rcpt, id, r.reply, this.deps.health.suspect(id))) next.push(r.rcpt)
        }
        break
      case 'backend':
        j.reason = `${id}: ${verdict.reason}`
        if (attempt.failure !== null) {
          next.push(...j.pending)
          break
        }
        // Every recipient refused at RCPT, some for the backend's reasons: those are retried elsewhere, but a
        // recipient refused for its own reasons in the same breath is settled now, as it would be alone.
        for (const r of attempt.refused) {
          const cls = classifyRefusal(r.reply)
          if (cls === 'message-permanent') {
            if (this.permanent(j, r.rcpt, id, r.reply)) next.push(r.rcpt)
          } else if (cls === 'message-temporary') j.hold(r.rcpt, r.reply)
          else next.push(r.rcpt)
        }
        break
      case 'message':
        if (verdict.permanent) {
          for (const rcpt of j.pending)
            if (this.permanent(j, rcpt, id, ownReply(attempt, rcpt, verdict.reply))) next.push(rcpt)
        } else {
          j.tempReply = verdict.reply
          j.held.push(...j.pending)
        }
        break
      case 'ambiguous':
        for (const rcpt of j.pending) {
          if (j.ambiguous(rcpt, id, ownReply(attempt, rcpt, verdict.reply), this.deps.health.suspect(id)))
            next.push(rcpt)
        }
        break
      case 'unsupported':
      case 'saturated':
        j.reason = `${id}: ${verdict.reason}`
        next.push(...j.pending)
        break
    }
    return next
  }

  /** A backend took the message: record it, and charge whoever refused these recipients ambiguously before. */
  private delivered(j: Journey, id: string, attempt: DeliveryAttempt): void {
    j.deliveries.push({ backendId: id, recipients: attempt.accepted, reply: attempt.dotReply })
    for (const rcpt of attempt.accepted) {
      // A backend accepted what others refused ambiguously: those were wrong (every one of them, when a suspect
      // backend's refusal did not count as confirmation).
      const earlier = j.ambiguity.get(rcpt)
      if (earlier) {
        for (const wrong of j.refusers.get(rcpt) ?? [earlier.backendId]) {
          if (j.charged.has(wrong)) continue
          j.charged.add(wrong)
          this.deps.health.chargeFault(
            wrong,
            `second opinion: ${id} accepted what it refused (${earlier.reply.code} ${earlier.reply.enhanced ?? ''})`,
          )
        }
      }
      j.ambiguity.delete(rcpt)
      j.refusers.delete(rcpt)
    }
  }

  /** The journey's end: delivered, rejected for good, or deferred with the reason a log line and the spool need. */
  private finish(j: Journey, deadlineAt: number): RelayResult {
    const { settings } = this.deps
    const { attempts, deliveries, refused } = j
    let pending = j.pending
    pending.push(...j.held)
    // Every backend asked refused to even try this envelope, and none configured could: retrying will not help.
    // (While a backend that could is out, the message waits for it: a temporary state must not bounce mail.)
    if (
      pending.length > 0 &&
      attempts.length > 0 &&
      attempts.every((a) => a.verdict === 'unsupported') &&
      this.noBackendOffersSmtputf8()
    ) {
      for (const rcpt of pending) refused.push({ rcpt, reply: UNSUPPORTED })
      pending = []
    }
    if (pending.length === 0) {
      if (deliveries.length > 0) return { outcome: 'delivered', attempts, deliveries, refused }
      return { outcome: 'rejected', reply: refused[0]!.reply, attempts, deliveries, refused }
    }
    const tempReply = j.tempReply
    let reason = j.reason
    if (j.held.length > 0 && tempReply !== null) {
      reason = `refused for now: ${tempReply.code} ${tempReply.enhanced ?? ''} ${tempReply.lines[0] ?? ''}`.trim()
    } else if (j.ambiguity.size > 0) {
      const first = j.ambiguity.values().next().value!
      reason = `${first.backendId} refused with ${first.reply.code} ${first.reply.enhanced ?? ''} and no second backend could confirm it`
    } else if (j.tries >= settings.maxAttempts) {
      reason = `${reason} (after ${j.tries} attempts)`
    } else if (this.now() >= deadlineAt) {
      reason = `${reason} (deadline of ${settings.deadlineMs / 1000}s reached)`
    }
    return { outcome: 'deferred', pending, reason, reply: tempReply, attempts, deliveries, refused }
  }
}
