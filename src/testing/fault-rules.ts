// Fault rules for the fake backend: their shape, validation, wire formatting of replies, and matching. Pure: no I/O.

export const FAULT_STAGES = ['connect', 'banner', 'ehlo', 'mail', 'rcpt', 'data', 'dot'] as const
export type FaultStage = (typeof FAULT_STAGES)[number]

export const FAULT_ACTIONS = ['reply', 'stall', 'drop', 'refuse', 'reset'] as const
export type FaultAction = (typeof FAULT_ACTIONS)[number]

export interface FaultRule {
  stage: FaultStage
  action: FaultAction
  /** For action 'reply': the reply to send, e.g. "451 4.3.0 Temporary failure" ("\n" separates lines). */
  reply?: string
  /** Chance (0..1) that the rule fires each time its stage is reached; default 1. */
  probability?: number
  /** Stage 'rcpt' only: the rule applies to recipients whose address contains this (case-insensitive). */
  rcpt?: string
}

export class FaultRuleError extends Error {
  readonly code = 'EFAULTRULE'
  constructor(message: string) {
    super(message)
    this.name = 'FaultRuleError'
  }
}

const REPLY_RE = /^[2-5]\d\d(?:[ -]|$)/

/** Throws FaultRuleError naming the rule (by index) and the fix when a rule cannot mean anything. */
export function validateFaultRules(rules: readonly FaultRule[]): void {
  rules.forEach((rule, i) => {
    const where = `fault rule #${i} (${JSON.stringify(rule)})`
    if (!FAULT_STAGES.includes(rule.stage)) {
      throw new FaultRuleError(`${where}: stage must be one of ${FAULT_STAGES.join(', ')}`)
    }
    if (!FAULT_ACTIONS.includes(rule.action)) {
      throw new FaultRuleError(`${where}: action must be one of ${FAULT_ACTIONS.join(', ')}`)
    }
    if ((rule.action === 'refuse' || rule.action === 'reset') && rule.stage !== 'connect') {
      throw new FaultRuleError(`${where}: action '${rule.action}' only exists at stage 'connect'`)
    }
    if (rule.action === 'reply') {
      if (rule.reply === undefined)
        throw new FaultRuleError(`${where}: action 'reply' needs a reply, e.g. "451 4.3.0 Try later"`)
      for (const line of rule.reply.split('\n')) {
        if (!REPLY_RE.test(line.replace(/\r$/, ''))) {
          throw new FaultRuleError(`${where}: reply line "${line}" must start with a 3-digit code from 200 to 599`)
        }
      }
    } else if (rule.reply !== undefined) {
      throw new FaultRuleError(`${where}: 'reply' only goes with action 'reply'`)
    }
    const p = rule.probability
    if (p !== undefined && !(Number.isFinite(p) && p >= 0 && p <= 1)) {
      throw new FaultRuleError(`${where}: probability must be a number from 0 to 1`)
    }
    if (rule.action === 'refuse' && p !== undefined && p !== 1) {
      throw new FaultRuleError(`${where}: 'refuse' closes the whole port, so its probability must be 1 (or left out)`)
    }
    if (rule.rcpt !== undefined && rule.stage !== 'rcpt') {
      throw new FaultRuleError(`${where}: 'rcpt' only goes with stage 'rcpt'`)
    }
  })
}

/** The numeric code of a rule's reply ("451 4.3.0 ..." → 451). */
export function replyCode(reply: string): number {
  return Number.parseInt(reply.slice(0, 3), 10)
}

/**
 * Formats a reply for the wire: "\n"-separated lines become a multi-line reply ("250-a", "250 b"), each ending in
 * CRLF. The code of the first line is used for continuation lines that give none.
 */
export function formatReply(reply: string): string {
  const lines = reply.split('\n').map((l) => l.replace(/\r$/, ''))
  const code = lines[0]?.slice(0, 3) ?? '451'
  return lines
    .map((line, i) => {
      const text = REPLY_RE.test(line) ? line.slice(4) : line
      const sep = i === lines.length - 1 ? ' ' : '-'
      return `${code}${sep}${text}`.trimEnd()
    })
    .map((l) => `${l}\r\n`)
    .join('')
}

/** A small deterministic PRNG (mulberry32) so seeded fault probabilities repeat run to run. */
export function createRng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The first rule for this stage (and recipient, at 'rcpt') that fires, or null. A rule with probability below 1
 * draws one number from rng each time it is considered; rules with probability 1 draw nothing, so adding a certain
 * rule does not shift the random sequence of the others.
 */
export function pickFault(
  rules: readonly FaultRule[],
  stage: FaultStage,
  rng: () => number,
  rcpt?: string,
): FaultRule | null {
  for (const rule of rules) {
    if (rule.stage !== stage) continue
    if (rule.rcpt !== undefined && !(rcpt ?? '').toLowerCase().includes(rule.rcpt.toLowerCase())) continue
    const p = rule.probability ?? 1
    if (p >= 1 || rng() < p) return rule
  }
  return null
}

/** True when the port should refuse connections under these rules. */
export function refusesConnections(rules: readonly FaultRule[]): boolean {
  return rules.some((r) => r.stage === 'connect' && r.action === 'refuse')
}
