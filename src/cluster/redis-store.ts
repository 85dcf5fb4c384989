// The state store shared by every mxgate node through Redis. Reads come from a local cache; writes apply locally at
// once and go through to Redis; pub/sub spreads them within a second; a poll every ~2 s and a full resync on every
// (re)connect make the cache converge even when notes were lost. Redis down = this node goes on alone, says so once,
// and replays its own writes when Redis is back (last writer wins by `at`).
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { type Logger, partLogger } from '../log'
import { StoreStoppedError } from './errors'
import { check, encode, parse, StateMaps, type StateValue, validateTiming, validCounts } from './local-state'
import { defaultNodeName } from './memory-store'
import {
  CANARY_RETURN_SCRIPT,
  type Keys,
  keyPrefix,
  layout,
  PRUNE_SCRIPT,
  parseCanaryNote,
  parseNote,
  WRITE_SCRIPT,
} from './redis-layout'
import {
  type ClientTuning,
  createRedisClient,
  DEFAULT_TUNING,
  parseRedisUrl,
  type RedisClient,
  type RedisTarget,
} from './redis-options'
import { OutcomeSync } from './redis-outcomes'
import {
  type AutoEjection,
  type CanaryShareResult,
  type ChangeKind,
  DEFAULT_TIMING,
  type ManualOverride,
  type NodeInfo,
  type OutcomeCounts,
  type ResyncEvent,
  type StateStore,
  type StateStoreEvents,
  type StoreTiming,
} from './types'

export interface RedisStoreOptions {
  /** A Redis URL (see parseRedisUrl) or an already parsed target. */
  url: string | RedisTarget
  /** Key prefix, default 'mxgate:'. Tests use `test-${randomUUID()}:`. */
  prefix?: string
  /** This node's name; must differ between nodes. Default hostname:pid. */
  node?: string
  timing?: Partial<StoreTiming>
  tuning?: Partial<ClientTuning>
  /** Outcome flush period. Default 1000 ms. */
  flushIntervalMs?: number
  /** Poll period for other nodes' counters and the state snapshot. Default 2000 ms. */
  pollIntervalMs?: number
  /** Longest start() waits for Redis before going on alone. Default 3000 ms. */
  startTimeoutMs?: number
  logger?: Logger
}

/** Returns kept while Redis is down, at most (oldest dropped first): shared when it is back. */
const MAX_UNSHARED_RETURNS = 10_000

/** Every this many polls, re-read all outcome buckets in the retention time, not only the recent ones. */
const FULL_POLL_EVERY = 15

interface PendingWrite {
  kind: ChangeKind
  id: string
  json: string | null
  at: number
}

type Link = 'unknown' | 'up' | 'down'

export class RedisStore extends EventEmitter<StateStoreEvents> implements StateStore {
  readonly node: string
  readonly target: RedisTarget
  readonly keys: Keys
  private readonly instance = randomUUID()
  private readonly timing: StoreTiming
  private readonly tuning: ClientTuning
  private readonly log: Logger
  private readonly state = new StateMaps()
  private readonly outcomes: OutcomeSync
  /** Local writes Redis has not confirmed, by kind+id; while one exists, remote values for that id are ignored. */
  private readonly pending = new Map<string, PendingWrite>()
  /** Highest Redis version applied per kind+id since the last (re)connect: older snapshots must not undo it. */
  private readonly seen = new Map<string, number>()
  /** Canary returns taken while Redis was unreachable, by token: shared on reconnect while still in time. */
  private readonly unshared = new Map<string, { at: number; ttlMs: number }>()
  private client: RedisClient | null = null
  private subscriber: RedisClient | null = null
  private link: Link = 'unknown'
  private lastError: Error | null = null
  private errors = 0
  private timers: NodeJS.Timeout[] = []
  private polls = 0
  /** Resync, poll and flush run one at a time, in order. */
  private queue: Promise<void> = Promise.resolve()
  private queued = new Set<string>()
  private firstSettled: (() => void) | null = null
  private stopped = false
  private readonly flushIntervalMs: number
  private readonly pollIntervalMs: number
  private readonly startTimeoutMs: number

  constructor(opts: RedisStoreOptions) {
    super()
    this.target = typeof opts.url === 'string' ? parseRedisUrl(opts.url) : opts.url
    this.node = opts.node ?? defaultNodeName()
    this.timing = { ...DEFAULT_TIMING, ...opts.timing }
    validateTiming(this.timing)
    this.tuning = { ...DEFAULT_TUNING, connectionName: `mxgate:${this.node}`, ...opts.tuning }
    this.keys = layout(keyPrefix(opts.prefix ?? 'mxgate:', this.target.mode === 'cluster'))
    this.log = (opts.logger ?? partLogger('cluster')).child({ redis: this.target.display })
    this.outcomes = new OutcomeSync(this.keys, this.node, this.timing, this.log)
    this.flushIntervalMs = opts.flushIntervalMs ?? 1000
    this.pollIntervalMs = opts.pollIntervalMs ?? 2000
    this.startTimeoutMs = opts.startTimeoutMs ?? 3000
  }

  get up(): boolean {
    return this.link === 'up'
  }

  /** Errors the command client has met; each failed (re)connect attempt is one. Lets a caller see reconnecting. */
  get linkErrors(): number {
    return this.errors
  }

  /** Writes made locally that Redis has not confirmed yet (replayed on reconnect). */
  get pendingWrites(): number {
    return this.pending.size
  }

  async start(): Promise<void> {
    if (this.client !== null) return
    if (this.stopped) throw new StoreStoppedError('start()')
    const settled = new Promise<void>((resolve) => {
      this.firstSettled = resolve
    })
    const client = createRedisClient(this.target, 'command', this.tuning)
    this.client = client
    client.on('error', (err: Error) => {
      this.lastError = err
      this.errors++
    })
    client.on('ready', () => this.onReady())
    client.on('close', () => this.onClose())

    const subscriber = createRedisClient(this.target, 'subscriber', this.tuning)
    this.subscriber = subscriber
    subscriber.on('error', () => {}) // the command client reports the link; this one only reconnects
    // Notes published while the subscriber was away are lost: reload the truth whenever it is (re)subscribed.
    subscriber.on('ready', () => this.schedule('resync', () => this.resync(false)))
    subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.keys.channel) this.onNote(text)
      else if (channel === this.keys.canaryChannel) this.onCanaryNote(text)
    })
    subscriber.subscribe(this.keys.channel, this.keys.canaryChannel).catch((err: unknown) => {
      if (!this.stopped) this.log.error({ err }, 'cannot subscribe to the change channel; relying on the poll')
    })

    this.timers.push(
      setInterval(() => this.schedule('flush', () => this.flush()), this.flushIntervalMs).unref(),
      setInterval(() => this.schedule('poll', () => this.poll()), this.pollIntervalMs).unref(),
    )
    const timeout = setTimeout(() => this.firstSettled?.(), this.startTimeoutMs)
    await settled
    clearTimeout(timeout)
    this.firstSettled = null
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    const client = this.client
    if (client !== null && this.link === 'up') {
      await this.queue
      await this.outcomes.flush(client).catch(() => {})
      await this.replay().catch(() => {})
    }
    this.firstSettled?.()
    client?.disconnect()
    this.subscriber?.disconnect()
    if (this.pending.size > 0)
      this.log.warn({ pending: this.pending.size }, 'state store stopped with writes Redis never confirmed')
  }

  overrides(): ReadonlyMap<string, ManualOverride> {
    return this.state.read('override')
  }

  ejections(): ReadonlyMap<string, AutoEjection> {
    return this.state.read('ejection')
  }

  setOverride(id: string, o: ManualOverride | null): Promise<void> {
    return this.write('override', id, o)
  }

  setEjection(id: string, e: AutoEjection | null): Promise<void> {
    return this.write('ejection', id, e)
  }

  recordOutcomes(id: string, ok: number, fail: number, at = Date.now(), refused = 0): void {
    if (this.stopped || !validCounts(ok, fail, refused)) return
    this.outcomes.record(id, ok, fail, at, refused)
  }

  pooledOutcomes(id: string, windowMs: number, now = Date.now()): OutcomeCounts {
    return this.outcomes.pooled(id, windowMs, now)
  }

  canarySent(token: string, ttlMs: number): void {
    const client = this.client
    if (client === null || this.link !== 'up' || this.stopped) return
    client
      .set(this.keys.canary(token), 's', 'PX', Math.max(1, Math.round(ttlMs)), 'NX')
      .catch((err: unknown) => this.log.debug({ err, token }, 'canary token not registered in Redis'))
  }

  async canaryReturned(token: string, at: number, ttlMs: number): Promise<CanaryShareResult> {
    const client = this.client
    if (client === null || this.link !== 'up' || this.stopped) return this.keepUnshared(token, at, ttlMs)
    const note = JSON.stringify({ token, at, src: this.instance })
    try {
      const reply = await client.eval(
        CANARY_RETURN_SCRIPT,
        1,
        this.keys.canary(token),
        String(at),
        String(Math.max(1, Math.round(ttlMs))),
        this.keys.canaryChannel,
        note,
      )
      return reply === 'claimed' || reply === 'repeated' ? reply : 'unknown'
    } catch (err) {
      this.log.debug({ err, token }, 'canary return kept until Redis answers')
      return this.keepUnshared(token, at, ttlMs)
    }
  }

  async canaryReturnOf(token: string): Promise<number | null | undefined> {
    const client = this.client
    if (client === null || this.link !== 'up' || this.stopped) return undefined
    try {
      const v = await client.get(this.keys.canary(token))
      if (v === null || !v.startsWith('r:')) return null
      const at = Number(v.slice(2))
      return Number.isFinite(at) ? at : null
    } catch {
      return undefined
    }
  }

  private keepUnshared(token: string, at: number, ttlMs: number): 'unreachable' {
    this.unshared.delete(token)
    this.unshared.set(token, { at, ttlMs })
    for (const oldest of this.unshared.keys()) {
      if (this.unshared.size <= MAX_UNSHARED_RETURNS) break
      this.unshared.delete(oldest)
    }
    return 'unreachable'
  }

  /** Back in touch: share the returns taken meanwhile that may still be waited for. */
  private async shareKept(): Promise<void> {
    const now = Date.now()
    for (const [token, { at, ttlMs }] of [...this.unshared]) {
      this.unshared.delete(token)
      if (at + ttlMs > now) await this.canaryReturned(token, at, at + ttlMs - now)
    }
  }

  private onCanaryNote(text: string): void {
    if (this.stopped) return
    const note = parseCanaryNote(text)
    if (note === null) {
      this.log.warn({ note: text.slice(0, 200) }, 'ignoring a malformed canary note on the channel')
      return
    }
    if (note.src !== this.instance) this.emit('canaryReturn', { token: note.token, at: note.at })
  }

  // Apply locally (so this node acts on it even with Redis down), then write through; a failed write stays pending.
  private async write<K extends ChangeKind>(kind: K, id: string, value: StateValue<K> | null): Promise<void> {
    if (this.stopped) throw new StoreStoppedError(`set ${kind} for backend "${id}"`)
    if (value !== null) check(kind, id, value)
    const copy = value === null ? null : { ...value }
    if (this.state.put(kind, id, copy)) this.emit('change', { kind, id, source: 'local' })
    const entry: PendingWrite = {
      kind,
      id,
      json: copy === null ? null : encode(kind, copy),
      at: copy?.at ?? Date.now(),
    }
    this.pending.set(pendingKey(kind, id), entry)
    if (this.link === 'up') await this.push(entry, 'force')
  }

  /** Returns true when Redis took the write, false when it held a newer value; throws when Redis did not answer. */
  private async push(entry: PendingWrite, mode: 'force' | 'lww'): Promise<boolean> {
    const client = this.client
    if (client === null) return false
    const key = pendingKey(entry.kind, entry.id)
    const note = JSON.stringify({ k: entry.kind, id: entry.id, src: this.instance, value: entry.json })
    let reply: unknown
    try {
      reply = await client.eval(
        WRITE_SCRIPT,
        3,
        this.keys.values[entry.kind],
        this.keys.tombstones[entry.kind],
        this.keys.version,
        entry.id,
        entry.json ?? '',
        String(entry.at),
        mode,
        this.keys.channel,
        note,
      )
    } catch (err) {
      this.log.debug({ err, kind: entry.kind, id: entry.id }, 'write kept for replay')
      if (mode === 'lww') throw err
      return false
    }
    const [applied, version] = Array.isArray(reply) ? reply.map(Number) : [0, 0]
    if (this.pending.get(key) === entry) this.pending.delete(key)
    this.seen.set(key, Math.max(this.seen.get(key) ?? 0, version ?? 0))
    return applied === 1
  }

  private onReady(): void {
    if (this.stopped) return
    const was = this.link
    this.link = 'up'
    // Versions from before the disconnect may belong to a Redis that restarted empty: start counting afresh.
    this.seen.clear()
    if (was === 'down') this.log.info('Redis is back; replaying local writes and resyncing')
    this.emit('up')
    this.schedule('resync', () => this.resync(true))
    if (this.unshared.size > 0) this.schedule('canaries', () => this.shareKept())
  }

  private onClose(): void {
    if (this.stopped || this.link === 'down') return
    this.link = 'down'
    this.log.warn(
      { err: this.lastError?.message ?? null },
      'Redis unreachable: this node goes on alone with its local state until Redis is back',
    )
    this.emit('down', this.lastError)
    this.firstSettled?.()
  }

  private onNote(text: string): void {
    if (this.stopped) return
    const note = parseNote(text)
    if (note === null) {
      this.log.warn({ note: text.slice(0, 200) }, 'ignoring a malformed change note on the channel')
      return
    }
    if (note.src === this.instance) return
    this.applyRemote(note.k, note.id, note.value, note.v)
  }

  /** Take a value Redis holds as of `version`, unless a local write or a newer note for that id wins. */
  private applyRemote(kind: ChangeKind, id: string, json: string | null, version: number): void {
    const key = pendingKey(kind, id)
    if (this.pending.has(key) || (this.seen.get(key) ?? -1) > version) return
    let value: StateValue<ChangeKind> | null = null
    if (json !== null) {
      value = parse(kind, json)
      if (value === null) {
        this.log.warn({ kind, id, json: json.slice(0, 200) }, 'ignoring a malformed value in Redis')
        return
      }
    }
    this.seen.set(key, version)
    if (this.state.put(kind, id, value)) this.emit('change', { kind, id, source: 'remote' })
  }

  // Run background jobs one at a time; a job already waiting is not queued twice.
  private schedule(name: string, job: () => Promise<unknown>): void {
    if (this.stopped || this.queued.has(name)) return
    this.queued.add(name)
    this.queue = this.queue.then(async () => {
      this.queued.delete(name)
      if (this.stopped || this.link !== 'up') return
      try {
        await job()
      } catch (err) {
        this.log.debug({ err, job: name }, 'background Redis job failed; the next one retries')
      }
    })
  }

  /** On (re)connect: write what was made while apart, then reload everything. */
  private async resync(replay: boolean): Promise<void> {
    const counts = replay ? await this.replay() : { replayed: 0, superseded: 0 }
    const client = this.client
    if (client === null) return
    await client
      .eval(PRUNE_SCRIPT, 1, this.keys.values.ejection, String(Date.now()))
      .then(() => client.eval(PRUNE_SCRIPT, 1, this.keys.values.override, String(Date.now())))
      .catch((err: unknown) => this.log.debug({ err }, 'pruning expired entries failed'))
    const loaded = await this.loadSnapshot(client)
    await this.outcomes.poll(client, true)
    this.firstSettled?.()
    const event: ResyncEvent = { ...loaded, ...counts }
    if (counts.replayed + counts.superseded > 0) this.log.info(event, 'resynced with Redis')
    this.emit('resync', event)
  }

  private async replay(): Promise<{ replayed: number; superseded: number }> {
    let replayed = 0
    let superseded = 0
    for (const entry of [...this.pending.values()]) {
      if ((await this.push(entry, 'lww')) === true) replayed++
      else superseded++
    }
    if (superseded > 0) this.log.info({ superseded }, 'local writes made while apart lost to newer ones in Redis')
    return { replayed, superseded }
  }

  // Overrides, ejections and the version in one MULTI: a consistent picture to compare note versions against.
  private async loadSnapshot(client: RedisClient): Promise<{ overrides: number; ejections: number }> {
    const results = await client
      .multi()
      .get(this.keys.version)
      .hgetall(this.keys.values.override)
      .hgetall(this.keys.values.ejection)
      .exec()
    if (results === null) throw new Error('snapshot transaction aborted')
    for (const [err] of results) if (err) throw err
    const version = Number(results[0]?.[1] ?? 0)
    const sizes = { overrides: 0, ejections: 0 }
    for (const [kind, index] of [
      ['override', 1],
      ['ejection', 2],
    ] as const) {
      const remote = (results[index]?.[1] ?? {}) as Record<string, string>
      for (const id of new Set([...Object.keys(remote), ...this.state.ids(kind)]))
        this.applyRemote(kind, id, remote[id] ?? null, version)
      sizes[kind === 'override' ? 'overrides' : 'ejections'] = Object.keys(remote).length
    }
    for (const [key, v] of this.seen) if (v <= version) this.seen.delete(key)
    return sizes
  }

  private async flush(): Promise<void> {
    if (this.client !== null) await this.outcomes.flush(this.client)
  }

  // Every ~2 s: other nodes' counters and the state snapshot (covers lost notes).
  private async poll(): Promise<void> {
    const client = this.client
    if (client === null) return
    // Writes still unconfirmed (a timeout while connected): replay them through a resync, which reports them.
    if (this.pending.size > 0) this.schedule('resync', () => this.resync(true))
    const full = ++this.polls % FULL_POLL_EVERY === 0
    await Promise.all([this.loadSnapshot(client), this.outcomes.poll(client, full), this.syncNodes(client)])
  }

  private own: NodeInfo | null = null
  private others: NodeInfo[] = []

  announce(configVersion: string): void {
    this.own = { node: this.node, configVersion, at: Date.now() }
    const client = this.client
    if (client !== null) this.schedule('nodes', () => this.syncNodes(client))
  }

  nodes(): NodeInfo[] {
    const now = Date.now()
    const fresh = this.others.filter((n) => n.node !== this.node && now - n.at < NODE_FRESH_MS)
    return [...(this.own === null ? [] : [this.own]), ...fresh]
  }

  /** Refreshes this node's entry and reads the others'; entries not refreshed for a day are removed. */
  private async syncNodes(client: RedisClient): Promise<void> {
    const now = Date.now()
    if (this.own !== null) {
      this.own = { ...this.own, at: now }
      await client.hset(this.keys.nodes, this.node, JSON.stringify(this.own))
    }
    const all = (await client.hgetall(this.keys.nodes)) as Record<string, string>
    const others: NodeInfo[] = []
    for (const [node, json] of Object.entries(all)) {
      const info = parseNodeInfo(node, json)
      if (info === null || now - info.at > NODE_FORGET_MS) await client.hdel(this.keys.nodes, node)
      else others.push(info)
    }
    this.others = others
  }
}

/** A node not heard from for this long is left out of `mxgate status` (it polls every ~2 s). */
const NODE_FRESH_MS = 30_000
const NODE_FORGET_MS = 86_400_000

function parseNodeInfo(node: string, json: string): NodeInfo | null {
  try {
    const v = JSON.parse(json) as Partial<NodeInfo>
    if (typeof v.configVersion !== 'string' || typeof v.at !== 'number') return null
    return { node, configVersion: v.configVersion, at: v.at }
  } catch {
    return null
  }
}

function pendingKey(kind: ChangeKind, id: string): string {
  return `${kind}\n${id}`
}
