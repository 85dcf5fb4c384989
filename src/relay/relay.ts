// One message's journey: pick a backend, deliver, classify, fail over, ask a second opinion, give up in time.
// Knows nothing of Haraka; the same code serves live mail and the spool's retries.
import type { DeliveryAttempt, RecipientReply, SmtpReply } from '../backend/outcome'
import type { MxgateConfig } from '../config/schema'
import type { Logger } from '../log'
import type { Envelope, InboundMessage } from '../message'
import { classifyAttempt, classifyRefusal, type Verdict } from './classify'
import { backendCaused, hasPermanentRefusal, needsConfirmation } from './confirm'

export interface BackendDeliverer {
  deliver(envelope: Envelope, body: Buffer, deadlineAt: number): Promise<DeliveryAttempt>
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
  // detector: begin
  /** Counts one attempt in the shared outcome counters (the detector's evidence), once its verdict is final. */
  settle(id: string, fail: boolean, refused: boolean): void
  /** The backend is under suspicion (probation, trial, or the detector's warning level): its 5xx are not passed on. */
  suspect(id: string): boolean
  // detector: end
}

export interface AttemptRecord {
  backendId: string
  verdict: Verdict['kind']
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
  /** Nothing delivered and the message itself was refused for good: pass `reply` to the sender. */
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

/** What the sender hears when no backend can take the envelope at all (RFC 6531 §3.5 for SMTPUTF8). */
const UNSUPPORTED: SmtpReply = {
  code: 553,
  enhanced: '5.6.7',
  lines: ['No mail server here can take this envelope (non-ASCII address without SMTPUTF8 support)'],
}

function describe(a: DeliveryAttempt, v: Verdict): string {
  if (v.kind === 'backend' || v.kind === 'unsupported') return v.reason
  const r = v.kind === 'delivered' ? a.dotReply : v.reply
  return r ? `${r.code} ${r.enhanced ?? ''} ${r.lines[0] ?? ''}`.replace(/\s+/g, ' ').trim() : 'no reply'
}

export class Relay {
  private readonly now: () => number

  /** Is some admitted backend left that this message has not tried? */
  private untried(avoid: ReadonlySet<string>): boolean {
    return this.deps.pool.pick(avoid) !== null
  }

  constructor(private readonly deps: RelayDeps) {
    this.now = deps.now ?? Date.now
  }

  /** Tries backends for `msg` until every recipient is settled, the attempts run out or the deadline passes. */
  async relay(msg: InboundMessage, deadlineAt = this.now() + this.deps.settings.deadlineMs): Promise<RelayResult> {
    const { pool, health, clients, settings } = this.deps
    const attempts: AttemptRecord[] = []
    const deliveries: Delivery[] = []
    const refused: RecipientReply[] = []
    // An ambiguous refusal waits for a second backend's view: rcpt → who said it and what.
    const ambiguity = new Map<string, { backendId: string; reply: SmtpReply }>()
    const charged = new Set<string>()
    // detector: every backend whose refusal of a recipient waits for an opinion (charged if another accepts it)
    const refusers = new Map<string, string[]>()
    const avoid = new Set<string>()
    let pending = [...msg.envelope.to]
    // Recipients refused temporarily for their own reasons (mailbox full, greylisted) are not tried on another
    // backend — the backends share the mailbox store, so the answer would be the same — but deferred.
    const held: string[] = []
    let tempReply: SmtpReply | null = null
    let reason = 'no backend is available'

    const refuse = (rcpt: string, reply: SmtpReply) => {
      refused.push({ rcpt, reply })
      ambiguity.delete(rcpt)
      refusers.delete(rcpt)
    }
    // A recipient refused ambiguously: if another backend said the same, it is the recipient's; else ask again.
    // A suspect backend's refusal is never passed on on its word alone, and never confirms another's.
    const ambiguous = (rcpt: string, backendId: string, reply: SmtpReply): boolean => {
      const suspect = health.suspect(backendId)
      if (!settings.secondOpinion && !suspect) {
        refuse(rcpt, reply)
        return false
      }
      const earlier = ambiguity.get(rcpt)
      if (earlier && earlier.backendId !== backendId && !suspect) {
        refuse(rcpt, reply)
        return false
      }
      ambiguity.set(rcpt, { backendId, reply })
      refusers.set(rcpt, [...(refusers.get(rcpt) ?? []), backendId])
      return true
    }
    // detector: begin
    // A permanent refusal that looks like the message's (5.1.x, 5.2.x, 5.6.x, X.3.4): a broken recipient lookup
    // answers exactly so, hence asked twice (per class, `relay.confirm_permanent`) or whenever the backend is suspect.
    // With a single backend configured there is nobody to ask: its word stands, as before.
    const canConfirm = clients.size > 1
    const permanent = (rcpt: string, backendId: string, reply: SmtpReply): boolean => {
      if (canConfirm && (needsConfirmation(reply, settings.confirmPermanent) || health.suspect(backendId)))
        return ambiguous(rcpt, backendId, reply)
      refuse(rcpt, reply)
      return false
    }
    // Attempts whose count waits for a second opinion: charged a fault if another backend took what they refused.
    const unsettled = new Map<string, boolean>()
    // detector: end

    let tries = 0
    while (pending.length > 0 && tries < settings.maxAttempts && this.now() < deadlineAt) {
      const id = pool.pick(avoid)
      if (id === null) break
      avoid.add(id)
      const client = clients.get(id)
      if (!client) throw new Error(`no client for backend ${id}`)
      const envelope: Envelope = { from: msg.envelope.from, to: pending }
      pool.begin(id)
      // Classified once, inside the breaker (which needs to know whose fault it was), and reused below.
      const classified: { verdict?: Verdict } = {}
      let attempt: DeliveryAttempt | null
      try {
        attempt = await health.track(
          id,
          () => client.deliver(envelope, msg.body, deadlineAt),
          (a) => {
            const v = classifyAttempt(a)
            classified.verdict = v
            return v.kind === 'backend' ? v.reason : null
          },
          { settleLater: true },
        )
      } finally {
        pool.end(id)
      }
      if (attempt === null) continue // its breaker opened meanwhile: not an attempt, pick another
      tries++
      const verdict = classified.verdict ?? classifyAttempt(attempt)
      const record: AttemptRecord = {
        backendId: id,
        verdict: verdict.kind,
        detail: describe(attempt, verdict),
        elapsedMs: attempt.elapsedMs,
      }
      attempts.push(record)
      this.deps.observe?.(record)

      const next: string[] = []
      switch (verdict.kind) {
        case 'delivered': {
          deliveries.push({ backendId: id, recipients: attempt.accepted, reply: attempt.dotReply })
          for (const rcpt of attempt.accepted) {
            // A backend accepted what another refused ambiguously: that other one was wrong (every one of them,
            // when a suspect backend's refusal did not count as confirmation).
            const earlier = ambiguity.get(rcpt)
            if (earlier)
              for (const wrong of refusers.get(rcpt) ?? [earlier.backendId]) {
                if (charged.has(wrong)) continue
                charged.add(wrong)
                health.chargeFault(
                  wrong,
                  `second opinion: ${id} accepted what it refused (${earlier.reply.code} ${earlier.reply.enhanced ?? ''})`,
                )
              }
            ambiguity.delete(rcpt)
            refusers.delete(rcpt)
          }
          for (const r of attempt.refused) {
            const cls = classifyRefusal(r.reply)
            if (cls === 'message-permanent') {
              if (permanent(r.rcpt, id, r.reply)) next.push(r.rcpt)
            } else if (cls === 'message-temporary') {
              held.push(r.rcpt)
              tempReply = r.reply
            } else if (cls === 'backend') {
              reason = `${id} refused ${r.rcpt}: ${r.reply.code} ${r.reply.enhanced ?? ''}`.trim()
              next.push(r.rcpt)
            } else if (ambiguous(r.rcpt, id, r.reply)) next.push(r.rcpt)
          }
          break
        }
        case 'backend':
          reason = `${id}: ${verdict.reason}`
          if (attempt.failure !== null) {
            next.push(...pending)
            break
          }
          // Every recipient refused at RCPT, some for the backend's reasons: those are retried elsewhere, but a
          // recipient refused for its own reasons in the same breath is settled now, as it would be alone.
          for (const r of attempt.refused) {
            const cls = classifyRefusal(r.reply)
            if (cls === 'message-permanent') {
              if (permanent(r.rcpt, id, r.reply)) next.push(r.rcpt)
            } else if (cls === 'message-temporary') {
              held.push(r.rcpt)
              tempReply = r.reply
            } else next.push(r.rcpt)
          }
          break
        case 'message':
          if (verdict.permanent) {
            for (const rcpt of pending) if (permanent(rcpt, id, verdict.reply)) next.push(rcpt)
          } else {
            tempReply = verdict.reply
            held.push(...pending)
          }
          break
        case 'ambiguous':
          for (const rcpt of pending) if (ambiguous(rcpt, id, verdict.reply)) next.push(rcpt)
          break
        case 'unsupported':
          reason = `${id}: ${verdict.reason}`
          next.push(...pending)
          break
      }
      pending = next
      // detector: begin
      const asked = next.some((rcpt) => ambiguity.get(rcpt)?.backendId === id)
      const fail = backendCaused(attempt, verdict)
      if (verdict.kind === 'unsupported') {
        // nothing was sent: no evidence either way
      } else if (!fail && asked) unsettled.set(id, hasPermanentRefusal(attempt, verdict))
      else health.settle(id, fail, hasPermanentRefusal(attempt, verdict))
      // detector: end
    }
    // detector: begin
    for (const [id, refusedFlag] of unsettled) health.settle(id, charged.has(id), refusedFlag)
    // detector: end

    pending.push(...held)
    // Every backend that could be asked refused to even try this envelope: retrying later will not help.
    if (
      pending.length > 0 &&
      attempts.length > 0 &&
      attempts.every((a) => a.verdict === 'unsupported') &&
      !this.untried(avoid)
    ) {
      for (const rcpt of pending) refused.push({ rcpt, reply: UNSUPPORTED })
      pending = []
    }
    if (pending.length === 0) {
      if (deliveries.length > 0) return { outcome: 'delivered', attempts, deliveries, refused }
      return { outcome: 'rejected', reply: refused[0]!.reply, attempts, deliveries, refused }
    }
    if (held.length > 0 && tempReply !== null) {
      reason = `refused for now: ${tempReply.code} ${tempReply.enhanced ?? ''} ${tempReply.lines[0] ?? ''}`.trim()
    } else if (ambiguity.size > 0) {
      const first = ambiguity.values().next().value!
      reason = `${first.backendId} refused with ${first.reply.code} ${first.reply.enhanced ?? ''} and no second backend could confirm it`
    } else if (tries >= settings.maxAttempts) {
      reason = `${reason} (after ${tries} attempts)`
    } else if (this.now() >= deadlineAt) {
      reason = `${reason} (deadline of ${settings.deadlineMs / 1000}s reached)`
    }
    return { outcome: 'deferred', pending, reason, reply: tempReply, attempts, deliveries, refused }
  }
}
