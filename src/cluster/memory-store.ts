// The default store: the same contract as the Redis store, for one process. Nothing leaves the process, so a restart
// forgets manual overrides; configure Redis when they must survive restarts or be shared by several nodes.
import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import { CanaryTokenBook } from './canary-tokens'
import { StoreStoppedError } from './errors'
import { check, OutcomeBuckets, StateMaps, validateTiming, validCounts } from './local-state'
import {
  type AutoEjection,
  type CanaryShareResult,
  type ChangeKind,
  DEFAULT_TIMING,
  type ManualOverride,
  type NodeInfo,
  type OutcomeCounts,
  type StateStore,
  type StateStoreEvents,
  type StoreTiming,
} from './types'

export interface MemoryStoreOptions {
  node?: string
  timing?: Partial<StoreTiming>
}

export function defaultNodeName(): string {
  return `${hostname()}:${process.pid}`
}

export class MemoryStore extends EventEmitter<StateStoreEvents> implements StateStore {
  readonly node: string
  private readonly timing: StoreTiming
  private readonly state = new StateMaps()
  private readonly outcomes: OutcomeBuckets
  private readonly canaries = new CanaryTokenBook()
  private started = false
  private prunedAt = 0
  private stopped = false

  constructor(opts: MemoryStoreOptions = {}) {
    super()
    this.node = opts.node ?? defaultNodeName()
    this.timing = { ...DEFAULT_TIMING, ...opts.timing }
    validateTiming(this.timing)
    this.outcomes = new OutcomeBuckets(this.timing.bucketMs)
  }

  get up(): boolean {
    return this.started && !this.stopped
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    this.emit('up')
  }

  async stop(): Promise<void> {
    this.stopped = true
  }

  overrides(): ReadonlyMap<string, ManualOverride> {
    return this.state.read('override')
  }

  ejections(): ReadonlyMap<string, AutoEjection> {
    return this.state.read('ejection')
  }

  async setOverride(id: string, o: ManualOverride | null): Promise<void> {
    this.put('override', id, o)
  }

  async setEjection(id: string, e: AutoEjection | null): Promise<void> {
    this.put('ejection', id, e)
  }

  recordOutcomes(id: string, ok: number, fail: number, at = Date.now(), refused = 0): void {
    if (this.stopped || !validCounts(ok, fail, refused)) return
    this.outcomes.add(id, ok, fail, at, refused)
    if (at - this.prunedAt >= this.timing.bucketMs) {
      this.prunedAt = at
      this.outcomes.prune(at - this.timing.retentionMs)
    }
  }

  pooledOutcomes(id: string, windowMs: number, now = Date.now()): OutcomeCounts {
    return this.outcomes.sum(id, now - Math.min(windowMs, this.timing.retentionMs), now)
  }

  canarySent(token: string, ttlMs: number): void {
    this.canaries.sent(token, ttlMs)
  }

  /** Local only: the process that sent it is this one (the IPC hub relays between workers). */
  async canaryReturned(token: string, at: number, ttlMs: number): Promise<CanaryShareResult> {
    const result = this.canaries.returned(token, at, ttlMs)
    if (result !== 'repeated') this.emit('canaryReturn', { token, at })
    return result
  }

  async canaryReturnOf(token: string): Promise<number | null> {
    return this.canaries.returnOf(token)
  }

  private own: NodeInfo | null = null

  announce(configVersion: string): void {
    this.own = { node: this.node, configVersion, at: Date.now() }
  }

  nodes(): NodeInfo[] {
    return this.own === null ? [] : [this.own]
  }

  private put<K extends ChangeKind>(
    kind: K,
    id: string,
    value: (K extends 'override' ? ManualOverride : AutoEjection) | null,
  ): void {
    if (this.stopped) throw new StoreStoppedError(`set ${kind} for backend "${id}"`)
    if (value !== null) check(kind, id, value)
    if (this.state.put(kind, id, value === null ? null : { ...value }))
      this.emit('change', { kind, id, source: 'local' })
  }
}
