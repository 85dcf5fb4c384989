// The RCPT-time decision for one recipient of ours: skip, a static list, or the backends (cached); the harvest
// guard; and what the sender hears when no backend could answer. The Haraka hook only translates the decision.
import type { SmtpReply } from '../backend/outcome'
import type { HarvestGuard } from './harvest'
import type { RecipientRoutes } from './policy'
import type { Answer, Verifier } from './verifier'

export type DecisionSource = 'backend' | 'memory' | 'shared' | 'static' | 'skipped' | 'harvest'
export type DecisionResult = 'known' | 'unknown' | 'undecided' | 'unavailable' | 'cutoff'

interface Common {
  result: DecisionResult
  source: DecisionSource
  /** Why, for the log line. */
  why?: string
}

export type Decision =
  | ({ action: 'accept' } & Common)
  /** 550 5.1.1 or the backend's own "no such address" reply. */
  | ({ action: 'refuse'; reply: SmtpReply } & Common)
  /** 450 4.4.3: no backend answered and verify.on_timeout = defer. */
  | ({ action: 'defer'; reply: SmtpReply } & Common)
  /** 421 4.7.0 and disconnect: a directory harvester. */
  | ({ action: 'cutoff'; reply: SmtpReply } & Common)

export interface CheckSettings {
  onTimeout: 'accept' | 'defer'
  harvestWindowMs: number
}

export interface Recipient {
  /** Local part as the sender gave it, and the domain ('' for bare <postmaster>). */
  user: string
  host: string
  /** `user@host`, as the message will be addressed to the backend. */
  address: string
}

export class RecipientCheck {
  constructor(
    private readonly routes: RecipientRoutes,
    private readonly verifier: Verifier,
    private readonly harvest: HarvestGuard,
    private readonly settings: CheckSettings,
  ) {}

  /**
   * Starts checks of recipients the client pipelined behind this one, so they run side by side: at most
   * MAX_AHEAD at a time per RCPT (a client that pipelines a thousand guesses gets no more backend dialogues than the
   * harvest limit lets through, give or take this window), none for a client already cut off.
   */
  prefetch(clientIp: string, addresses: readonly string[], ours: (domain: string) => boolean): void {
    if (this.harvest.blocked(clientIp)) return
    for (const address of addresses.slice(0, MAX_AHEAD)) {
      const at = address.lastIndexOf('@')
      const user = address.slice(0, at)
      const host = address.slice(at + 1)
      if (!ours(host.toLowerCase()) || /[%!@]/.test(user)) continue
      if (this.routes.route(user, host) === 'backends') void this.verifier.check(address)
    }
  }

  async decide(clientIp: string, rcpt: Recipient): Promise<Decision> {
    if (this.harvest.blocked(clientIp)) return this.cutoff(clientIp)
    const route = this.routes.route(rcpt.user, rcpt.host)
    switch (route) {
      case 'skip':
        return { action: 'accept', result: 'known', source: 'skipped' }
      case 'static-known':
        return { action: 'accept', result: 'known', source: 'static' }
      case 'static-unknown':
        return this.unknown(clientIp, rcpt, 'static', UNKNOWN)
      case 'backends':
        return this.fromAnswer(clientIp, rcpt, await this.verifier.check(rcpt.address))
    }
  }

  private fromAnswer(clientIp: string, rcpt: Recipient, answer: Answer): Decision {
    switch (answer.result) {
      case 'known':
        return { action: 'accept', result: 'known', source: answer.source }
      case 'unknown':
        return this.unknown(clientIp, rcpt, answer.source, answer.reply)
      case 'undecided':
        return { action: 'accept', result: 'undecided', source: 'backend', why: answer.why }
      case 'unavailable':
        if (this.settings.onTimeout === 'accept')
          return { action: 'accept', result: 'unavailable', source: 'backend', why: answer.why }
        return { action: 'defer', result: 'unavailable', source: 'backend', why: answer.why, reply: UNVERIFIED }
    }
  }

  private unknown(clientIp: string, rcpt: Recipient, source: DecisionSource, reply: SmtpReply): Decision {
    if (this.harvest.refused(clientIp)) return this.cutoff(clientIp)
    return { action: 'refuse', result: 'unknown', source, reply, why: `no such recipient: ${rcpt.address}` }
  }

  private cutoff(clientIp: string): Decision {
    const minutes = Math.ceil(this.settings.harvestWindowMs / 60_000)
    const reply: SmtpReply = {
      code: 421,
      enhanced: '4.7.0',
      lines: [`Too many unknown recipients from ${clientIp}; closing (try again in ${minutes} min)`],
    }
    return { action: 'cutoff', result: 'cutoff', source: 'harvest', reply, why: 'directory harvest' }
  }
}

/** Pipelined recipients checked ahead of their RCPT's turn. */
const MAX_AHEAD = 20

const UNKNOWN: SmtpReply = { code: 550, enhanced: '5.1.1', lines: ['Recipient address rejected: no such user here'] }
const UNVERIFIED: SmtpReply = {
  code: 450,
  enhanced: '4.4.3',
  lines: ['Recipient address not verified now (no mail server answered); try again later'],
}
