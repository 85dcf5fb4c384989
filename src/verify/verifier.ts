// Is this recipient a mailbox the backends have? Asked at RCPT, while the sender is still connected, so an unknown
// recipient is refused there and never bounced later (backscatter). Postfix's reject_unverified_recipient model:
// MAIL FROM the probe sender, RCPT TO the address, RSET, on the same pooled sessions, through the same breaker and
// classification as deliveries.
//
//   backend's answer to RCPT                          verdict       cached                 sender hears at RCPT
//   2xx                                               known         positive_ttl           250
//   5.1.x (no such address), confirmed by another     unknown       negative_ttl           550 5.1.1 (its reply)
//     backend (a pool of one: its word stands)
//   5.1.x, another backend takes it                   known         positive_ttl           250; the refuser charged
//   5.1.x, no other backend could answer              unavailable   no                     on_timeout
//   anything else from the recipient's side            undecided     no                     250; delivery decides
//     (5.2.x, 4.2.x, ambiguous 5.7.x)
//   backend fault (connect, timeout, 421, 4.3.x, …)   charged to it, next backend
//   no backend answered in time                       unavailable   no                     on_timeout (250 or 450)
//
// Suspect backends (probation, trial, the detector's warning level) are never asked. A fault is charged to the
// backend's breaker, as a delivery's is; verifications do not enter the detector's outcome counts (those are rates
// per message, and a check is not one).
import type { DeliveryAttempt, SmtpReply } from '../backend/outcome'
import type { Logger } from '../log'
import type { Envelope } from '../message'
import { type Verdict as AttemptVerdict, classifyAttempt } from '../relay/classify'
import type { HealthPort, PoolPort } from '../relay/relay'
import { type CacheTier, cacheKey, type Verdict, type VerdictCache } from './cache'

/** A session held for one check (BackendClient.reserve). */
export interface CheckLease {
  verify(envelope: Envelope, deadlineAt: number): Promise<DeliveryAttempt>
  cancel(): void
}

export interface CheckClient {
  reserve(deadlineAt: number): Promise<CheckLease | DeliveryAttempt>
}

/** The pool as deliveries see it: checks pick backends the same way. */
export type CheckPool = PoolPort

/** The health ports deliveries use, less settle(): check faults reach the breaker only, not the detector's rates. */
export type CheckHealth = Pick<HealthPort, 'track' | 'chargeFault' | 'suspect'>

export type Source = 'backend' | CacheTier

export type Answer =
  | { result: 'known'; source: Source }
  | { result: 'unknown'; source: Source; reply: SmtpReply }
  /** A backend refused for a reason of the recipient's other than "no such address": the delivery path decides. */
  | { result: 'undecided'; why: string }
  /** No backend could answer (or confirm a refusal) in time: the on_timeout policy decides. */
  | { result: 'unavailable'; why: string }

export interface VerifierSettings {
  sender: string
  timeoutMs: number
  maxAttempts: number
}

export interface VerifierDeps {
  clients: ReadonlyMap<string, CheckClient>
  pool: CheckPool
  health: CheckHealth
  cache: VerdictCache
  settings: VerifierSettings
  log: Logger
  /** Metrics: every cache lookup (the tier that answered, or null), every dialogue with backends and its duration. */
  observe?: { cache(tier: CacheTier | null): void; dialogue(result: Answer['result'], seconds: number): void }
  now?: () => number
}

/** "No such address" (RFC 3463 X.1.x, permanent): the one refusal verification answers at RCPT. */
export function unknownAddress(reply: SmtpReply): boolean {
  return reply.code >= 500 && reply.code < 600 && (reply.enhanced?.startsWith('5.1.') ?? false)
}

/**
 * The refusal in an attempt that did not take the recipient: its RCPT reply (`rcpt` true), or the reply to MAIL (the
 * probe sender refused, which says nothing about the recipient).
 */
function refusalOf(attempt: DeliveryAttempt, verdict: AttemptVerdict): { reply: SmtpReply | null; rcpt: boolean } {
  const own = attempt.failure === null ? attempt.refused[0]?.reply : undefined
  if (own !== undefined) return { reply: own, rcpt: true }
  return { reply: verdict.kind === 'message' || verdict.kind === 'ambiguous' ? verdict.reply : null, rcpt: false }
}

const replyLine = (r: SmtpReply) => `${r.code} ${r.enhanced ?? ''} ${r.lines[0] ?? ''}`.replace(/\s+/g, ' ').trim()

export class Verifier {
  private readonly inflight = new Map<string, Promise<Answer>>()
  private readonly now: () => number

  constructor(private readonly deps: VerifierDeps) {
    this.now = deps.now ?? Date.now
  }

  /** Checks in progress (pipelined recipients are checked side by side). */
  get pending(): number {
    return this.inflight.size
  }

  /**
   * The answer for `address` (`user@domain`): from the cache, or from the backends. Concurrent checks of one address
   * share one dialogue. Never rejects.
   */
  check(address: string): Promise<Answer> {
    const key = cacheKey(address)
    const running = this.inflight.get(key)
    if (running !== undefined) return running
    const p = this.lookup(key, address)
      .catch((err: unknown): Answer => {
        this.deps.log.error({ err, rcpt: address }, 'recipient check failed unexpectedly')
        return { result: 'unavailable', why: `internal error: ${(err as Error).message}` }
      })
      .finally(() => this.inflight.delete(key))
    this.inflight.set(key, p)
    return p
  }

  private async lookup(key: string, address: string): Promise<Answer> {
    const cached = await this.deps.cache.get(key)
    this.deps.observe?.cache(cached?.tier ?? null)
    if (cached !== null) return fromVerdict(cached.verdict, cached.tier)
    const started = performance.now()
    const answer = await this.ask(address)
    if (answer.result === 'known') this.deps.cache.put(key, { known: true })
    else if (answer.result === 'unknown') this.deps.cache.put(key, { known: false, reply: answer.reply })
    this.deps.observe?.dialogue(answer.result, (performance.now() - started) / 1000)
    return answer
  }

  /** Asks backends in turn until one answers for good, with a second for "no such address". */
  private async ask(address: string): Promise<Answer> {
    const { pool, health, clients, settings } = this.deps
    const deadlineAt = this.now() + settings.timeoutMs
    const avoid = new Set<string>()
    let refusal: { id: string; reply: SmtpReply } | null = null
    let why = 'no backend is available'
    let tries = 0
    while (tries < settings.maxAttempts && this.now() < deadlineAt) {
      const id = pool.pick(avoid)
      if (id === null) break
      avoid.add(id)
      // A suspect backend's "no such user" is exactly what it must not be trusted with; nor its "exists".
      if (health.suspect(id)) continue
      const tried = await this.attempt(id, address, deadlineAt)
      if (tried === null) continue // its breaker opened meanwhile
      const { attempt, verdict } = tried
      if (verdict.kind === 'saturated' || verdict.kind === 'unsupported') {
        why = `${id}: ${verdict.reason}`
        continue
      }
      tries++
      if (verdict.kind === 'delivered') {
        if (refusal !== null) {
          const said = replyLine(refusal.reply)
          health.chargeFault(refusal.id, `recipient check: ${id} took ${address}, which it refused (${said})`)
        }
        return { result: 'known', source: 'backend' }
      }
      if (verdict.kind === 'backend') {
        why = `${id}: ${verdict.reason}`
        continue
      }
      const { reply, rcpt } = refusalOf(attempt, verdict)
      if (reply === null || !rcpt || !unknownAddress(reply)) {
        const said = reply ? replyLine(reply) : 'no reply'
        return {
          result: 'undecided',
          why: `${id} refused ${rcpt ? address : `the probe sender ${settings.sender}`}: ${said}`,
        }
      }
      // A pool of one has nobody to ask: its word stands, as it does for deliveries.
      if (clients.size === 1 || (refusal !== null && refusal.id !== id)) {
        return { result: 'unknown', source: 'backend', reply }
      }
      refusal = { id, reply }
    }
    if (refusal !== null) {
      const said = replyLine(refusal.reply)
      why = `${refusal.id} refused ${address} with ${said} and no second backend could confirm it (last: ${why})`
    }
    if (this.now() >= deadlineAt) why = `${why} (verify.timeout of ${settings.timeoutMs / 1000}s reached)`
    return { result: 'unavailable', why }
  }

  /** One check on one backend, through its breaker; null when the breaker would not let it run. */
  private async attempt(
    id: string,
    address: string,
    deadlineAt: number,
  ): Promise<{ attempt: DeliveryAttempt; verdict: AttemptVerdict } | null> {
    const { pool, health, clients, settings } = this.deps
    const client = clients.get(id)
    if (!client) throw new Error(`no client for backend ${id}`)
    pool.begin(id)
    try {
      const lease = await client.reserve(deadlineAt)
      if (!('verify' in lease)) return { attempt: lease, verdict: classifyAttempt(lease) }
      const envelope = { from: settings.sender, to: [address] }
      let verdict: AttemptVerdict | null = null
      let attempt: DeliveryAttempt | null = null
      try {
        attempt = await health.track(
          id,
          () => lease.verify(envelope, deadlineAt),
          (a) => {
            verdict = classifyAttempt(a)
            return verdict.kind === 'backend' ? verdict.reason : null
          },
          // Breaker only: the detector's counts are per message.
          { settleLater: true },
        )
      } finally {
        if (attempt === null) lease.cancel()
      }
      if (attempt === null) return null
      return { attempt, verdict: verdict ?? classifyAttempt(attempt) }
    } finally {
      pool.end(id)
    }
  }
}

function fromVerdict(v: Verdict, tier: CacheTier): Answer {
  return v.known ? { result: 'known', source: tier } : { result: 'unknown', source: tier, reply: v.reply }
}
