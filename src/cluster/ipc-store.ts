// Shared state between the worker processes of one node when there is no Redis: the Haraka master process keeps
// the state (ipc-hub.ts) and every worker a copy, updated over the cluster IPC channel. Same contract as the other
// stores: reads are local, writes apply locally first, nothing waits on the master.
import { EventEmitter } from 'node:events'
import { CanaryTokenBook } from './canary-tokens'
import { MemoryStore } from './memory-store'
import type {
  AutoEjection,
  CanaryShareResult,
  ChangeKind,
  ManualOverride,
  NodeInfo,
  OutcomeCounts,
  StateStore,
  StateStoreEvents,
  StoreTiming,
} from './types'

/** The messages on the IPC channel (tagged so Haraka's own messages pass by). */
export type IpcMessage =
  | { mxgate: 'state'; op: 'hello' }
  | { mxgate: 'state'; op: 'put'; kind: ChangeKind; id: string; value: ManualOverride | AutoEjection | null }
  | { mxgate: 'state'; op: 'snapshot'; overrides: [string, ManualOverride][]; ejections: [string, AutoEjection][] }
  // Canary tokens: a worker registers what it sends; a return that reached another worker goes through the hub.
  | { mxgate: 'state'; op: 'canary-sent'; token: string; ttlMs: number }
  | { mxgate: 'state'; op: 'canary-return'; token: string; at: number; ttlMs: number; req: number }
  | { mxgate: 'state'; op: 'canary-ack'; req: number; result: CanaryShareResult }
  | { mxgate: 'state'; op: 'canary-returned'; token: string; at: number; ttlMs: number }

export function isIpcMessage(m: unknown): m is IpcMessage {
  return typeof m === 'object' && m !== null && (m as { mxgate?: unknown }).mxgate === 'state'
}

export interface IpcChannel {
  send(m: IpcMessage): void
  on(event: 'message', fn: (m: unknown) => void): void
  off(event: 'message', fn: (m: unknown) => void): void
}

/** How long a worker waits for the hub to answer a shared canary return before calling it unreachable. */
const HUB_ANSWER_MS = 2000

export class IpcStore extends EventEmitter<StateStoreEvents> implements StateStore {
  private readonly inner: MemoryStore
  /** Returns other workers received, as the hub relayed them (the channel loses nothing while it is open). */
  private readonly canaries = new CanaryTokenBook()
  private readonly asks = new Map<number, (r: CanaryShareResult) => void>()
  private nextAsk = 1
  private remote = false
  private readonly onMessage = (m: unknown) => this.receive(m)

  constructor(
    private readonly channel: IpcChannel,
    node: string,
    timing?: Partial<StoreTiming>,
  ) {
    super()
    this.inner = new MemoryStore({ node, ...(timing === undefined ? {} : { timing }) })
    this.inner.on('change', (ev) => this.emit('change', { ...ev, source: this.remote ? 'remote' : 'local' }))
  }

  get node(): string {
    return this.inner.node
  }

  get up(): boolean {
    return this.inner.up
  }

  async start(): Promise<void> {
    await this.inner.start()
    this.channel.on('message', this.onMessage)
    this.channel.send({ mxgate: 'state', op: 'hello' })
    this.emit('up')
  }

  async stop(): Promise<void> {
    this.channel.off('message', this.onMessage)
    await this.inner.stop()
  }

  overrides(): ReadonlyMap<string, ManualOverride> {
    return this.inner.overrides()
  }

  ejections(): ReadonlyMap<string, AutoEjection> {
    return this.inner.ejections()
  }

  async setOverride(id: string, o: ManualOverride | null): Promise<void> {
    await this.inner.setOverride(id, o)
    this.channel.send({ mxgate: 'state', op: 'put', kind: 'override', id, value: o })
  }

  async setEjection(id: string, e: AutoEjection | null): Promise<void> {
    await this.inner.setEjection(id, e)
    this.channel.send({ mxgate: 'state', op: 'put', kind: 'ejection', id, value: e })
  }

  /** Outcome counts stay per worker without Redis (the node-wide view needs the Redis store). */
  recordOutcomes(id: string, ok: number, fail: number, at?: number, refused?: number): void {
    this.inner.recordOutcomes(id, ok, fail, at, refused)
  }

  pooledOutcomes(id: string, windowMs: number, now?: number): OutcomeCounts {
    return this.inner.pooledOutcomes(id, windowMs, now)
  }

  canarySent(token: string, ttlMs: number): void {
    this.trySend({ mxgate: 'state', op: 'canary-sent', token, ttlMs })
  }

  canaryReturned(token: string, at: number, ttlMs: number): Promise<CanaryShareResult> {
    const req = this.nextAsk++
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle('unreachable'), HUB_ANSWER_MS)
      timer.unref()
      const settle = (r: CanaryShareResult) => {
        clearTimeout(timer)
        this.asks.delete(req)
        resolve(r)
      }
      this.asks.set(req, settle)
      if (!this.trySend({ mxgate: 'state', op: 'canary-return', token, at, ttlMs, req })) settle('unreachable')
    })
  }

  async canaryReturnOf(token: string): Promise<number | null> {
    return this.canaries.returnOf(token)
  }

  private trySend(m: IpcMessage): boolean {
    try {
      this.channel.send(m)
      return true
    } catch {
      return false
    }
  }

  /** Per worker without Redis: each worker reports its own settings (a reload reaches every worker). */
  announce(configVersion: string): void {
    this.inner.announce(configVersion)
  }

  nodes(): NodeInfo[] {
    return this.inner.nodes()
  }

  private receive(m: unknown): void {
    if (!isIpcMessage(m) || m.op === 'hello' || m.op === 'canary-sent' || m.op === 'canary-return') return
    if (m.op === 'canary-ack') {
      this.asks.get(m.req)?.(m.result)
      return
    }
    if (m.op === 'canary-returned') {
      // Read back by the sender when its timeout fires, in case it was busy with the note.
      this.canaries.returned(m.token, m.at, m.ttlMs)
      this.emit('canaryReturn', { token: m.token, at: m.at })
      return
    }
    this.remote = true
    try {
      if (m.op === 'put') {
        if (m.kind === 'override') void this.inner.setOverride(m.id, m.value as ManualOverride | null)
        else void this.inner.setEjection(m.id, m.value as AutoEjection | null)
        return
      }
      for (const [id, o] of m.overrides) void this.inner.setOverride(id, o)
      for (const [id, e] of m.ejections) void this.inner.setEjection(id, e)
      this.emit('resync', { overrides: m.overrides.length, ejections: m.ejections.length, replayed: 0, superseded: 0 })
    } finally {
      this.remote = false
    }
  }
}
