// The shared backend-state store: what every mxgate node agrees on about backends (manual overrides, automatic
// ejections) and the outcome counts the outlier detector pools over all nodes. Reads are synchronous from a local
// cache, so nothing on the SMTP path waits on Redis.
import type { EventEmitter } from 'node:events'

/** An operator's decision: wins over automatic state, persists until restored (or `until`). */
export interface ManualOverride {
  state: 'ejected' | 'draining'
  /** Who made it (operator name or 'cli@host'). */
  by: string
  reason: string
  /** Epoch ms when it was made; the tie-breaker when two nodes changed the same backend while apart. */
  at: number
  /** Epoch ms when it lapses by itself, or null to last until restored. */
  until: number | null
}

/** The health engine's decision to take a backend out for a while. */
export interface AutoEjection {
  reason: string
  /** Epoch ms when the ejection was decided. */
  at: number
  /** Epoch ms when it ends; reads leave out ejections whose `until` has passed. */
  until: number
  /** How many times in a row this backend has been ejected: the health engine grows the time with it. */
  count: number
  /** The node that decided it. */
  node: string
}

/** Outcome counts of one backend in one time bucket. */
export interface OutcomeBucket {
  /** Epoch ms, a multiple of the bucket length. */
  start: number
  ok: number
  fail: number
  /** Attempts with a permanent, message-looking refusal (5.1.x, 5.2.x, 5.6.x, X.3.4): the detector's second signal. */
  refused: number
}

/** What pooledOutcomes returns: counts summed over buckets and nodes. */
export interface OutcomeCounts {
  ok: number
  fail: number
  refused: number
}

export type ChangeKind = 'override' | 'ejection'

/** Emitted with 'change' whenever the value a read returns for a backend changed. */
export interface ChangeEvent {
  kind: ChangeKind
  id: string
  /** 'local': this process wrote it; 'remote': another node did (pub/sub or resync). */
  source: 'local' | 'remote'
}

/** Emitted with 'resync' after the local cache was reloaded from Redis. */
export interface ResyncEvent {
  overrides: number
  ejections: number
  /** Local writes made while Redis was unreachable that were written on this resync. */
  replayed: number
  /** Local writes dropped because Redis held a newer value for the same backend (last writer wins by `at`). */
  superseded: number
}

/** A canary token that came back to another process of the cluster (README "Canaries"). */
export interface CanaryReturnNote {
  token: string
  /** Epoch ms when it came back, on the receiving process's clock. */
  at: number
}

/** What sharing a returned token found: a process had sent it, none had, or the store could not be asked. */
export type CanaryShareResult = 'claimed' | 'unknown' | 'repeated' | 'unreachable'

export interface StateStoreEvents {
  change: [ChangeEvent]
  /** Another process received a canary token (possibly one this process sent). */
  canaryReturn: [CanaryReturnNote]
  up: []
  down: [Error | null]
  resync: [ResyncEvent]
}

export interface StateStore extends EventEmitter<StateStoreEvents> {
  /** Connect and load. Never rejects because Redis is down: the store starts alone and emits 'down'. */
  start(): Promise<void>
  /** Flush what can be flushed quickly, then close connections and timers. */
  stop(): Promise<void>
  /** Redis reachable (the memory store: always true once started). */
  readonly up: boolean
  /** The name this process writes under (AutoEjection.node, outcome counters). */
  readonly node: string
  /** Current manual overrides by backend id (expired ones left out). */
  overrides(): ReadonlyMap<string, ManualOverride>
  /** Current automatic ejections by backend id (expired ones left out). */
  ejections(): ReadonlyMap<string, AutoEjection>
  /** Set (or with null, restore) a manual override. Applies locally at once; never rejects because Redis is down. */
  setOverride(id: string, o: ManualOverride | null): Promise<void>
  /** Set (or with null, clear) an automatic ejection. Applies locally at once; never rejects because Redis is down. */
  setEjection(id: string, e: AutoEjection | null): Promise<void>
  /**
   * Count message outcomes for a backend; batched and shared in the background. `refused` counts those of the
   * attempts (already in ok or fail) that carried a permanent, message-looking refusal.
   */
  recordOutcomes(id: string, ok: number, fail: number, at?: number, refused?: number): void
  /**
   * Outcomes of a backend over the last `windowMs`, summed over all nodes. The window is rounded out to whole
   * buckets and capped at the retention time; other nodes' counts are as fresh as the last poll (~2 s).
   */
  pooledOutcomes(id: string, windowMs: number, now?: number): OutcomeCounts
  /**
   * Canary tokens across processes (README "Canaries"): a sender registers each canary it sends for `ttlMs`
   * (fire and forget); a process that gets a token back it did not send shares it, and every process hears of it
   * as 'canaryReturn'. The memory store keeps both in this process.
   */
  canarySent(token: string, ttlMs: number): void
  /** Never rejects: 'unreachable' = kept locally and shared when the store is back (within ttlMs). */
  canaryReturned(token: string, at: number, ttlMs: number): Promise<CanaryShareResult>
  /** When another process reported the token back; null: not (yet); undefined: the store could not be asked. */
  canaryReturnOf(token: string): Promise<number | null | undefined>
  /** Says which settings this node runs; with Redis every node sees it (and it is refreshed while the node runs). */
  announce(configVersion: string): void
  /** Nodes heard from recently, this one included, by name. */
  nodes(): NodeInfo[]
}

/** A node and the settings it runs, as it last announced them. */
export interface NodeInfo {
  node: string
  /** Hash of its effective settings (config/reload-plan.ts configVersion). */
  configVersion: string
  /** Epoch ms of its last announcement (Redis: refreshed on every poll). */
  at: number
}

export interface StoreTiming {
  /** Length of an outcome bucket. Default 10 s. */
  bucketMs: number
  /** How long outcome buckets are kept (locally and in Redis). Default 10 min. */
  retentionMs: number
}

export const DEFAULT_TIMING: StoreTiming = { bucketMs: 10_000, retentionMs: 600_000 }
