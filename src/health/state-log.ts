// The last state changes of every backend on this node, for the status page's timeline (ejections marked). Bounded:
// the newest MAX_EVENTS changes; the registry's log lines remain the full record.
import type { BackendStatus } from './registry'

const MAX_EVENTS = 200

export type ShownState = BackendStatus['state'] | 'manual-ejected' | 'draining'

export interface StateEvent {
  /** Epoch ms. */
  at: number
  backend: string
  state: ShownState
  reason: string | null
  /** Who took it out, when it went out: breaker, detector, probation, operator. */
  cause: string | null
}

/** The state an operator sees: a manual override wins over the automatic state. */
export function shownState(s: Pick<BackendStatus, 'state' | 'manual'>): ShownState {
  if (s.manual) return s.manual.state === 'ejected' ? 'manual-ejected' : 'draining'
  return s.state
}

export class StateLog {
  private readonly events: StateEvent[] = []

  constructor(private readonly now: () => number = Date.now) {}

  /** Feed with the registry's 'state' events; a repeat of the state already shown (a reason update) is kept too. */
  note(s: BackendStatus): void {
    const state = shownState(s)
    const reason = s.manual ? s.manual.reason : s.reason
    const previous = this.events.findLast((e) => e.backend === s.id)
    if (previous && previous.state === state && previous.reason === reason) return
    const out = state === 'ejected' || state === 'manual-ejected'
    this.events.push({
      at: this.now(),
      backend: s.id,
      state,
      reason,
      cause: out ? (s.manual ? 'operator' : s.ejectedBy) : null,
    })
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS)
  }

  /** Changes at or after `since` (epoch ms), oldest first. */
  since(since: number): StateEvent[] {
    return this.events.filter((e) => e.at >= since).map((e) => ({ ...e }))
  }
}
