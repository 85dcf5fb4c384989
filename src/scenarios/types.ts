// The shapes the scenario suite shares: a scenario as data (rows.ts), what one run of it recorded (run.ts), and
// what its checks concluded (checks.ts). No logic here.
import type { FaultRule } from '../testing/fault-rules'

export interface BackendSpec {
  id: string
  /** Relative share of traffic (default 100). */
  weight?: number
  /** Fault rules from the first message on (see src/testing/fault-rules.ts). */
  faults?: FaultRule[]
  /** Meant to be ejected: its ejections are not counted as false ones. */
  culprit?: boolean
  /** Flapping: `faults` hold for failMs, then none for okMs, repeatedly, from the first message (ms, full scale). */
  flap?: { failMs: number; okMs: number }
}

export interface LoadSpec {
  /** Messages to send at most (spread round-robin over both nodes). */
  messages: number
  /** No message starts after this long (ms); those left are not sent. */
  timeLimitMs: number
  /** Messages in flight at once (each on its own SMTP connection). */
  concurrency: number
  /** At most this many messages started per second (both nodes together); unset = as fast as they go. */
  rate?: number
  /** Recipients per message, cycled: [1, 1, 1, 2] gives every fourth message two. Default [1]. */
  recipients?: number[]
}

/** An operator's command through node A's admin API, before message `atMessage` starts (0 = before the load). */
export interface Action {
  atMessage: number
  op: 'eject' | 'restore'
  backend: string
}

/**
 * What a row must show. Metric and log checks name what they look for as data, so they can be tuned to the
 * detector's names without touching the runner.
 */
export type Check =
  /** Ejected at most `messages` messages into the run: pooled (all messages sent), or the backend's own. */
  | { kind: 'ejectedWithin'; backend: string; messages: number; count: 'pooled' | 'own' }
  /** No backend that is not a culprit was ejected. */
  | { kind: 'noFalseEjections' }
  /** At most `max` ejections in the whole run, counting only those whose reason matches `reason` when given. */
  | { kind: 'maxEjections'; max: number; reason?: string }
  /** At most `max` backends out (ejected, probing, on trial) at the same moment. */
  | { kind: 'maxEjectedAtOnce'; max: number }
  /** Each of the backend's ejections lasts at least as long as the one before, and the last longer than the first. */
  | { kind: 'ejectionsGrow'; backend: string }
  /** Ejected after the operator restored it and before it left probation, carrying at most maxShare meanwhile. */
  | { kind: 'ejectedInProbation'; backend: string; maxShare: number }
  | { kind: 'lost'; max: number }
  | { kind: 'bounced'; max: number }
  /** A series' peak (the sum over both nodes, sampled through the run) within [min, max]. */
  | { kind: 'metric'; what: string; name: string; labels?: Record<string, string>; min?: number; max?: number }
  /** At least `min` log lines (both nodes) whose msg matches the regular expression `match`. */
  | { kind: 'log'; what: string; match: string; min: number }

/** CI settings: shorter counts and windows. Config is scaled through `ini`, flap periods through `timeScale`. */
export interface QuickSpec {
  load?: Partial<LoadSpec>
  /** Layered over the scenario's own ini. */
  ini?: string
  /** Multiplies flap periods (0.1: 30 s becomes 3 s). */
  timeScale?: number
}

export interface Scenario {
  /** Short id for `--only`. */
  name: string
  /** The row as the issue words it. */
  title: string
  mustShow: string
  backends: BackendSpec[]
  /** Node config overrides, mxgate.ini text (layered over config/mxgate.ini, under the harness's own keys). */
  ini: string
  load: LoadSpec
  quick?: QuickSpec
  actions?: Action[]
  checks: Check[]
}

/** One ejection as the cluster saw it: the first node to eject, the other nodes' copies merged in. */
export interface Ejection {
  backend: string
  /** Epoch ms the (first) node put it out. */
  since: number
  until: number | null
  reason: string | null
  nodes: string[]
  /** Messages the run had started by `since` (both nodes). */
  atMessage: number
  /** Delivery attempts (MAIL FROM) the backend itself had seen by `since`. */
  ownMessages: number
  /** Its state on that node at the poll before: 'probation', 'admitted', … (null when never seen). */
  stateBefore: string | null
}

export interface Ledger {
  sent: number
  /** 250 after the final dot. */
  accepted: number
  tempFailed: number
  /** Messages with any 5xx reply (at RCPT for some recipient, or the whole message). */
  rejected: number
  noReply: number
  /** DSNs that reached the fake smarthost. */
  dsns: number
  /** rejected + dsns: what senders heard as a bounce. */
  bounced: number
  /** Recipients mxgate answered 250 for that are at no backend and got no DSN. */
  lost: number
  lostSample: string[]
  /** Recipients delivered more than once (over all backends). */
  duplicates: number
}

export interface RunRecord {
  scenario: string
  seed: number
  quick: boolean
  planned: number
  startedAt: number
  durationMs: number
  ejections: Ejection[]
  /** Most backends out at once on any node, and which they were then ("A: mx3 ejected, mx4 probing"). */
  maxOut: number
  maxOutWhich: string
  actions: (Action & { at: number })[]
  ledger: Ledger
  /** Spool entries left on both nodes when the bounded wait ended. */
  spoolLeft: number
  /** Peak of each watched metric series (sum over nodes), keyed as the check names it. */
  metrics: Record<string, number>
  /** For each log check's pattern: matching lines over both nodes. */
  logMatches: Record<string, number>
  /** Transactions per backend between each restore and the next ejection of it, and all messages meanwhile. */
  probation: Record<string, { own: number; all: number } | undefined>
  notes: string[]
}

export interface CheckResult {
  check: Check
  pass: boolean
  /** What was seen, e.g. "ejected at message 412". */
  detail: string
}
