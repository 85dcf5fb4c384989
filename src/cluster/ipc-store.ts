// Shared state between the worker processes of one node when there is no Redis: the Haraka master process keeps
// the state (ipc-hub.ts) and every worker a copy, updated over the cluster IPC channel. Same contract as the other
// stores: reads are local, writes apply locally first, nothing waits on the master.
import { EventEmitter } from 'node:events'
import { MemoryStore } from './memory-store'
import type {
  AutoEjection,
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

export function isIpcMessage(m: unknown): m is IpcMessage {
  return typeof m === 'object' && m !== null && (m as { mxgate?: unknown }).mxgate === 'state'
}

export interface IpcChannel {
  send(m: IpcMessage): void
  on(event: 'message', fn: (m: unknown) => void): void
  off(event: 'message', fn: (m: unknown) => void): void
}

export class IpcStore extends EventEmitter<StateStoreEvents> implements StateStore {
  private readonly inner: MemoryStore
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

  /** Per worker without Redis: each worker reports its own settings (a reload reaches every worker). */
  announce(configVersion: string): void {
    this.inner.announce(configVersion)
  }

  nodes(): NodeInfo[] {
    return this.inner.nodes()
  }

  private receive(m: unknown): void {
    if (!isIpcMessage(m) || m.op === 'hello') return
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
