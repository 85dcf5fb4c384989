// What the admin HTTP API needs from a running node. The engine implements it; the admin server and its tests
// depend only on this, so the arrows stay one way: admin → {health, spool, cluster} through this port.
import type { Registry } from 'prom-client'

export type BackendState = 'admitted' | 'probation' | 'ejected' | 'probing' | 'trial' | 'draining' | 'manual-ejected'

export interface BackendView {
  id: string
  address: string
  weight: number
  state: BackendState
  /** Why it is in this state: ejection evidence, the operator's reason, … null when admitted. */
  reason: string | null
  /** Epoch ms of the last state change. */
  since: number
  /** When the current ejection (automatic or manual) ends, if it does. */
  until: number | null
  /** Who set a manual state (the token's name), when manual. */
  by: string | null
  inFlight: number
  /** Successful attempts / all attempts over the last 5 minutes on this node; null without traffic. */
  successRatio: number | null
  /** Attempts per minute over the last 5 minutes on this node. */
  messagesPerMinute: number
  /** What the outlier detector sees and did (absent on nodes without one). */
  detector?: DetectorView
  /** Its canaries on this node (absent when canaries are off): README "Canaries". */
  canary?: CanaryView
}

export interface CanaryView {
  sent: number
  returned: number
  lost: number
  /** Past the timeout while the state store could not say whether another node got it back (no evidence). */
  unjudged: number
  /** Not taken with 250. */
  failed: number
  pending: number
  /** The last round trip (250 → token back) in ms; null before the first. */
  lastRoundTripMs: number | null
  /** The canary loss statistic now and the backend's loss rate over its last canaries. */
  statistic: number
  lossRate: number | null
}

/** What a returned canary token did: counted for its backend, or not pending here (late, repeated, another node's). */
export type CanaryReturnView =
  | { kind: 'returned'; backendId: string; roundTripMs: number }
  | { kind: 'unknown' }
  | { kind: 'off' }

/** The detector's evidence for one backend: README "How the detector decides". */
export interface DetectorView {
  /** Who took it out, while it is out: breaker, detector, probation, operator. */
  ejectedBy: 'breaker' | 'detector' | 'probation' | 'canary' | 'operator' | null
  /** The evidence of a detector ejection: faults and messages behind the statistic, the pool's rate, h. */
  evidence: {
    signal: 'fault' | 'refusal' | 'canary'
    faults: number
    messages: number
    rate: number
    poolRate: number | null
    statistic: number
    threshold: number
    firstFaultAt: number | null
  } | null
  /** The statistic now, per signal, and the threshold that applies now (lower in probation). */
  statistic: { fault: number; refusal: number }
  threshold: number
  /** Fault and permanent-refusal shares over the detector window, pooled over nodes, and the rest of the pool's. */
  faultRatio: number | null
  refusalRatio: number | null
  poolFaultRatio: number | null
  /** Its 5xx are confirmed by another backend before a sender hears them. */
  suspect: boolean
  /** An alarm held back (observe mode, budget reached, pool degraded). */
  wouldEject: boolean
  /** Pool-wide flags, repeated on every backend for the CLI. */
  mode: 'enforce' | 'observe'
  poolDegraded: boolean
  budgetFrozen: boolean
}

export interface Actor {
  /** The admin token's name (audit "who"). */
  by: string
  /** The client address (audit "from where"). */
  from: string
}

export interface SpoolItemView {
  id: string
  from: string
  to: string[]
  pending: string[]
  receivedAt: number
  attempts: number
  nextAttemptAt: number
  held: boolean
  size: number
  lastError: string | null
}

export interface ReadinessView {
  ready: boolean
  /** Why not ready (spool over its limits, no admitted backend and spool full, shutting down…). */
  reasons: string[]
}

/** What the status page shows without a token: states, counts, ages; never an envelope address. */
export interface StatusView {
  node: string
  /** Epoch ms on the node (the page measures ages against it, not the browser's clock). */
  now: number
  backends: BackendView[]
  readiness: ReadinessView
  spool: {
    /** False while the spool is being recovered at start (the counts are then 0). */
    open: boolean
    messages: number
    bytes: number
    held: number
    full: boolean
    /** Epoch ms the oldest spooled message was received, or null when the spool is empty. */
    oldestReceivedAt: number | null
  }
  /** configured false: no Redis, this node's state is its own. */
  redis: { configured: boolean; up: boolean }
  detector: { mode: 'enforce' | 'observe'; poolDegraded: boolean; budgetFrozen: boolean }
}

/** Attempts of one step: delivered (ok) and charged to the backend (fail). */
export interface HistoryPoint {
  at: number
  ok: number
  fail: number
}

/** A backend's state change, newest last; `cause` is set on ejections. */
export interface StateChangeView {
  at: number
  backend: string
  state: string
  reason: string | null
  cause: string | null
}

/** Outcome counts per backend and for the pool over a window, pooled over nodes, plus this node's state changes. */
export interface HistoryView {
  node: string
  now: number
  from: number
  to: number
  stepMs: number
  backends: Record<string, HistoryPoint[]>
  pool: HistoryPoint[]
  events: StateChangeView[]
}

/** Thrown by AdminPort methods for an id that does not exist; the server turns it into 404. */
export class UnknownIdError extends Error {
  readonly code = 'EUNKNOWNID'
  constructor(
    readonly kind: 'backend' | 'message',
    readonly id: string,
    /** The ids that do exist (for the 404 message), possibly truncated. */
    readonly known: string[],
  ) {
    super(`unknown ${kind} "${id}"; known: ${known.length > 0 ? known.join(', ') : '(none)'}`)
    this.name = 'UnknownIdError'
  }
}

/** Thrown by AdminPort methods the node cannot answer yet (spool recovery); the server turns it into 503. */
export class NotReadyError extends Error {
  readonly code = 'ENOTREADY'
  constructor(message: string) {
    super(message)
    this.name = 'NotReadyError'
  }
}

/**
 * Thrown by AdminPort methods when the spooled message is being delivered or changed right now, by this process or
 * another one on the same spool (it holds the message's claim); the server turns it into 409. Nothing was changed.
 */
export class MessageBusyError extends Error {
  readonly code = 'EMESSAGEBUSY'
  constructor(readonly id: string) {
    super(`message ${id} is being delivered right now; try again in a moment`)
    this.name = 'MessageBusyError'
  }
}

/** One journal entry as `journal ls` shows it: a message the backend took, and the recipients it took. */
export interface JournalEntryView {
  id: string
  /** Epoch ms the backend took it. */
  at: number
  from: string
  rcpts: string[]
  messageId: string | null
  size: number
  /** Already put back into the spool by an earlier replay for this backend. */
  replayed: boolean
}

export interface JournalListView {
  node: string
  backend: string
  since: number
  until: number
  entries: JournalEntryView[]
}

export interface ReplayRequestView {
  backend: string
  since: number
  until: number
  dryRun: boolean
  again: boolean
}

export interface ReplayView extends ReplayRequestView {
  node: string
  /** Messages put back into the spool (would be, in a dry run) and their body bytes. */
  messages: number
  bytes: number
  /** Entries an earlier replay already sent (left out unless `again`). */
  skipped: number
  /** Why the replay stopped early, or null. */
  error: string | null
}

/** The journal is off on this node (journal.enabled = false): nothing to list or replay. */
export class JournalOffError extends Error {
  readonly code = 'EJOURNALOFF'
  constructor() {
    super('the journal is off on this node (journal.enabled = false): there is nothing to list or replay')
    this.name = 'JournalOffError'
  }
}

/** What a reload did on one node (README "Reload"). */
export interface ReloadView {
  node: string
  /** The settings' version before and after (equal when nothing changed live). */
  previousVersion: string
  configVersion: string
  files: string[]
  added: string[]
  /** Removed backends get no new message; their messages in flight finish, then they go. */
  removed: string[]
  reweighted: { id: string; from: number; to: number }[]
  /** Keys (section.key) changed in place. */
  changed: string[]
  /** Keys that changed in the file but keep their running value until a restart. */
  needsRestart: { key: string; running: unknown; file: unknown }[]
  notes: string[]
}

/** A reload that changed nothing because the new settings are invalid (or a reload cannot run here). */
export class ReloadRefusedError extends Error {
  readonly code = 'ERELOAD'
  constructor(message: string) {
    super(message)
    this.name = 'ReloadRefusedError'
  }
}

/** A node and the settings it runs (with Redis: every node; without: this one). */
export interface NodeView {
  node: string
  configVersion: string
  /** Epoch ms it last said so. */
  at: number
}

export interface AdminPort {
  nodeName: string
  /** Hash of the settings this node runs (changes with a reload that changes something). */
  configVersion: string
  /** Nodes sharing this node's state store and the settings each runs. */
  nodes(): NodeView[]
  backends(): BackendView[]
  /** Throws UnknownIdError. */
  backend(id: string): BackendView
  /** Manual ejection on every node; `forMs` null = until restored. Throws UnknownIdError. */
  eject(id: string, reason: string, forMs: number | null, actor: Actor): Promise<BackendView>
  /** No new messages to it; messages in flight finish. Throws UnknownIdError. */
  drain(id: string, reason: string, actor: Actor): Promise<BackendView>
  /** Clears manual and automatic ejection; the backend ramps up again. Throws UnknownIdError. */
  restore(id: string, actor: Actor): Promise<BackendView>
  /** Re-reads and applies the configuration (as SIGHUP does). Throws ReloadRefusedError when nothing changed. */
  reload(actor: Actor): Promise<ReloadView>
  /** Liveness: the process answers. */
  healthy(): boolean
  /** Readiness for the load balancer. */
  readiness(): ReadinessView
  /** The status page's view: backends, spool counts, Redis, readiness. */
  status(): StatusView
  /** Outcome counts over the last `windowMs` (at most 30 min) and the state changes in it. */
  history(windowMs: number): HistoryView
  /** A canary token came back by the webhook (absent on ports without canaries). */
  canaryReturned?(token: string): CanaryReturnView
  /** prom-client registry whose metrics /metrics exposes. */
  metrics: Registry
  spool: {
    list(): SpoolItemView[]
    /** Throws UnknownIdError. */
    show(
      id: string,
    ): SpoolItemView & { lastErrors: { backendId: string; stage: string; message: string; at: number }[] }
    /** Retry now (one message, or all when id is undefined); resolves how many were scheduled. */
    flush(id: string | undefined, actor: Actor): Promise<number>
    hold(id: string, actor: Actor): Promise<SpoolItemView>
    release(id: string, actor: Actor): Promise<SpoolItemView>
    /** Give up on a message now: DSN to its sender (never to <>), remove it. */
    bounce(id: string, actor: Actor): Promise<void>
  }
  journal: {
    /** What `backend` took in [since, until). Throws UnknownIdError, JournalOffError. */
    list(backend: string, since: number, until: number): Promise<JournalListView>
    /** Puts it back into the spool for the other backends. Throws UnknownIdError, JournalOffError. */
    replay(req: ReplayRequestView, actor: Actor): Promise<ReplayView>
  }
}
