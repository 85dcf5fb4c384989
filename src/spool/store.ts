// SpoolStore: durable local storage for messages no backend took yet. One file per message; see
// docs/spool-format.md for the format, the write protocol and what survives which crash.
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { uptime } from 'node:os'
import { join } from 'node:path'
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { type Claim, ClaimFiles } from './claims'
import { DirSyncer, type FaultHook, FreeSpaceGauge, HOST_TAG, pidAlive } from './disk'
import {
  errnoOf,
  SpoolConfigError,
  SpoolCorruptError,
  SpoolFullError,
  SpoolNotFoundError,
  SpoolStateError,
  SpoolWriteError,
} from './errors'
import {
  envName,
  msgName,
  parseName,
  readEnvelope,
  readMessageBody,
  readMessageHeader,
  tempName,
  writeAll,
} from './files'
import {
  encodeEnvelope,
  encodeMessageHead,
  type LastError,
  MAX_LAST_ERRORS,
  type SpoolEntry,
  validateEntry,
} from './format'

export type { Claim } from './claims'
export type { SpoolEntry } from './format'

export interface SpoolOptions {
  dir: string
  maxMessages: number
  maxBytes: number
  /** Refuse new messages when the file system would have less than this many bytes free afterwards. */
  minFreeBytes: number
  /** false skips every fsync: only for tests and benchmarks, a crash then loses mail. */
  fsync: boolean
  /** A claim older than this may be taken over even if its holder still runs. Default 15 minutes. */
  claimLeaseMs?: number
  /** A temp file older than this is deleted at open() even if its writer's pid looks alive. Default 1 hour. */
  tempMaxAgeMs?: number
  /** Test hook: called before each file-system step; throw to inject a fault. */
  fault?: FaultHook
}

export interface WriteMeta {
  /** Recipients still to deliver (default: all); the other envelope recipients are recorded as done. */
  pending?: string[]
  trace?: string
  attempts?: number
  nextAttemptAt?: number
  lastErrors?: LastError[]
}

export type EntryPatch = Partial<
  Pick<SpoolEntry, 'pending' | 'done' | 'bounced' | 'attempts' | 'nextAttemptAt' | 'lastErrors' | 'trace' | 'held'>
>

export interface SpoolStats {
  messages: number
  bytes: number
  full: boolean
  reason: string | null
}

interface Indexed {
  entry: SpoolEntry
  /** Sequence number of the envelope sidecar in force; 0 = the header inside the message file. */
  seq: number
}

/** Files indexed between two turns of the event loop at startup and refresh (about 10-50 ms of work). */
const YIELD_EVERY = 256

export class SpoolStore {
  private readonly index = new Map<string, Indexed>()
  private bytes = 0
  private inflightMessages = 0
  private inflightBytes = 0
  private opened = false
  private readonly dirSync: DirSyncer
  private readonly gauge: FreeSpaceGauge
  private readonly claims: ClaimFiles
  private readonly chains = new Map<string, Promise<unknown>>()
  /** File fsyncs issued (each written file gets its own). */
  fileSyncs = 0

  constructor(
    private readonly opts: SpoolOptions,
    private readonly log: Logger,
  ) {
    for (const key of ['maxMessages', 'maxBytes', 'minFreeBytes'] as const) {
      const v = opts[key]
      if (!Number.isFinite(v) || v < 0) throw new SpoolConfigError(key, `must be a number >= 0, got ${String(v)}`)
    }
    if (!opts.dir) throw new SpoolConfigError('dir', 'must be a directory path')
    this.dirSync = new DirSyncer(opts.dir, opts.fsync, opts.fault)
    this.gauge = new FreeSpaceGauge(opts.dir)
    this.claims = new ClaimFiles(join(opts.dir, 'claims'), opts.claimLeaseMs ?? 15 * 60_000, log)
  }

  /** Directory fsyncs issued; lower than the number of writes when concurrent writes were group-committed. */
  get dirSyncs(): number {
    return this.dirSync.syncs
  }

  /** Create the directories, discard temp files of dead writers, index every complete file, quarantine bad ones. */
  async open(): Promise<{ resumed: number; discardedTemp: number; quarantined: number }> {
    const { dir } = this.opts
    await fsp.mkdir(join(dir, 'claims'), { recursive: true })
    await fsp.mkdir(join(dir, 'quarantine'), { recursive: true })
    const names = await fsp.readdir(dir)
    const bootAt = Date.now() - uptime() * 1000
    const maxAge = this.opts.tempMaxAgeMs ?? 3_600_000
    let discardedTemp = 0
    for (const name of names) {
      const p = parseName(name)
      if (p.kind !== 'temp') continue
      const st = await fsp.stat(join(dir, name)).catch(() => null)
      if (!st) continue
      const writerDead =
        st.mtimeMs < bootAt ||
        Date.now() - st.mtimeMs > maxAge ||
        (p.host === HOST_TAG && p.pid !== process.pid && !pidAlive(p.pid))
      if (!writerDead) continue
      // Its sender never got 250 (we answer only after the rename), so it still has the message.
      await fsp.unlink(join(dir, name)).catch(() => undefined)
      discardedTemp++
    }
    const before = this.index.size
    const quarantined = await this.scan(names, true)
    await this.claims.sweep((id) => this.index.has(id))
    this.opened = true
    const resumed = this.index.size - before
    this.log.info({ dir, resumed, discardedTemp, quarantined, bytes: this.bytes }, 'spool opened')
    return { resumed, discardedTemp, quarantined }
  }

  /** Pick up files written, updated or removed by other processes sharing the directory (one readdir). */
  async refresh(): Promise<{ added: number; removed: number; updated: number }> {
    this.mustBeOpen()
    // Only ids indexed before the readdir can be judged gone: a write that lands during it is not in `names`.
    const known = [...this.index.keys()]
    const names = await fsp.readdir(this.opts.dir)
    const present = new Set<string>()
    for (const name of names) {
      const p = parseName(name)
      if (p.kind === 'message') present.add(p.id)
    }
    let removed = 0
    for (const id of known) {
      if (this.index.has(id) && !present.has(id) && !this.chains.has(id)) {
        this.drop(id)
        removed++
      }
    }
    const before = this.index.size
    const seqsBefore = new Map([...this.index].map(([id, ix]) => [id, ix.seq]))
    await this.scan(names, false)
    let updated = 0
    for (const [id, seq] of seqsBefore) if ((this.index.get(id)?.seq ?? seq) !== seq) updated++
    return { added: this.index.size - before, removed, updated }
  }

  /**
   * Make a message durable. Resolves only after the file (header + body) and its directory entry are on disk;
   * rejects with SpoolFullError (nothing written) or SpoolWriteError (nothing left behind).
   */
  async write(msg: InboundMessage, meta: WriteMeta = {}): Promise<SpoolEntry> {
    this.mustBeOpen()
    const size = msg.body.length
    await this.reserve(size)
    try {
      const now = Date.now()
      const id = `${now.toString(36)}-${randomBytes(8).toString('hex')}`
      const to = [...msg.envelope.to]
      const pending = meta.pending ? [...meta.pending] : [...to]
      const entry: SpoolEntry = {
        version: 1,
        id,
        from: msg.envelope.from,
        to,
        pending,
        done: to.filter((r) => !pending.includes(r)),
        bounced: [],
        receivedAt: msg.receivedAt,
        attempts: meta.attempts ?? 0,
        nextAttemptAt: meta.nextAttemptAt ?? now,
        lastErrors: (meta.lastErrors ?? []).slice(-MAX_LAST_ERRORS),
        trace: meta.trace ?? msg.id,
        held: false,
        size,
      }
      await this.durablyPlace(msgName(id), [encodeMessageHead(entry, msg.body), msg.body])
      this.put(id, { entry: freeze(entry), seq: 0 })
      return this.index.get(id)!.entry
    } finally {
      this.inflightMessages--
      this.inflightBytes -= size
    }
  }

  list(): SpoolEntry[] {
    this.mustBeOpen()
    return [...this.index.values()].map((ix) => ix.entry)
  }

  get(id: string): SpoolEntry | undefined {
    return this.index.get(id)?.entry
  }

  stats(): SpoolStats {
    // "Full" means the next message (of at least one byte) would be refused.
    const reason = this.fullReason(1, this.opts.minFreeBytes > 0 ? this.gauge.cached() : Number.POSITIVE_INFINITY)
    return { messages: this.index.size, bytes: this.bytes, full: reason !== null, reason: reason?.detail ?? null }
  }

  async readBody(id: string): Promise<Buffer> {
    this.mustBeOpen()
    try {
      return await readMessageBody(this.opts.dir, id)
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') {
        this.drop(id)
        throw new SpoolNotFoundError(id)
      }
      if (err instanceof SpoolCorruptError) {
        await this.quarantine(msgName(id), err.reason)
        this.drop(id)
      }
      throw err
    }
  }

  /** Durably replace the envelope: a new sidecar <id>.<seq+1>.env (temp, fsync, rename, dir fsync). */
  async update(id: string, patch: EntryPatch): Promise<SpoolEntry> {
    this.mustBeOpen()
    return this.exclusive(id, async () => {
      const cur = this.index.get(id)
      if (!cur) throw new SpoolNotFoundError(id)
      const next = { ...cur.entry, ...definedOnly(patch) } as SpoolEntry
      next.lastErrors = next.lastErrors.slice(-MAX_LAST_ERRORS)
      try {
        validateEntry(JSON.parse(JSON.stringify(next)), `update(${id})`)
      } catch (err) {
        throw new SpoolConfigError(`update(${id}) patch`, (err as Error).message)
      }
      // Another process may have delivered and removed it: do not leave an orphan sidecar behind.
      if (!(await exists(join(this.opts.dir, msgName(id))))) {
        this.drop(id)
        throw new SpoolNotFoundError(id)
      }
      const seq = cur.seq + 1
      await this.durablyPlace(envName(id, seq), [encodeEnvelope(next)])
      // The old sidecar is now shadowed (highest seq wins), so its removal needs no fsync.
      if (cur.seq > 0) await fsp.unlink(join(this.opts.dir, envName(id, cur.seq))).catch(() => undefined)
      this.put(id, { entry: freeze(next), seq })
      return this.index.get(id)!.entry
    })
  }

  /** Delete a message for good (delivered or bounced). Idempotent. The message file goes first: see the doc. */
  async remove(id: string): Promise<void> {
    this.mustBeOpen()
    return this.exclusive(id, async () => {
      const seq = this.index.get(id)?.seq ?? 0
      const file = join(this.opts.dir, msgName(id))
      try {
        await this.opts.fault?.('unlink', file)
        await fsp.unlink(file).catch(ignoreEnoent)
        if (seq > 0) await fsp.unlink(join(this.opts.dir, envName(id, seq))).catch(ignoreEnoent)
        await this.dirSync.sync()
      } catch (err) {
        throw new SpoolWriteError('remove', file, err)
      }
      this.drop(id)
    })
  }

  /** Entries ready for another attempt: not held, something pending, nextAttemptAt <= now; oldest received first. */
  due(now: number, limit: number): SpoolEntry[] {
    this.mustBeOpen()
    const ready: SpoolEntry[] = []
    for (const { entry } of this.index.values()) {
      if (!entry.held && entry.pending.length > 0 && entry.nextAttemptAt <= now) ready.push(entry)
    }
    ready.sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    return ready.slice(0, Math.max(0, limit))
  }

  /** Claim a message for delivery across processes; null when someone else holds it or it is gone. */
  async claim(id: string, owner: string): Promise<Claim | null> {
    this.mustBeOpen()
    const c = await this.claims.acquire(id, owner)
    if (c && !(await exists(join(this.opts.dir, msgName(id))))) {
      await this.claims.release(c)
      this.drop(id)
      return null
    }
    return c
  }

  release(claim: Claim): Promise<void> {
    return this.claims.release(claim)
  }

  /** Write `bufs` to a temp file (O_EXCL), fsync it, rename it to `name`, fsync the directory (group commit). */
  private async durablyPlace(name: string, bufs: Buffer[]): Promise<void> {
    const { dir, fault } = this.opts
    const tmp = join(dir, tempName(randomBytes(6).toString('hex')))
    const final = join(dir, name)
    let fh: fsp.FileHandle | undefined
    let step = 'open'
    let placed = false
    try {
      await fault?.('open', tmp)
      fh = await fsp.open(tmp, 'wx', 0o640)
      step = 'write'
      await fault?.('write', tmp)
      await writeAll(fh, bufs)
      if (this.opts.fsync) {
        // The directory fsync below persists the name only; without this the renamed file can come back empty.
        step = 'fsync'
        await fault?.('fsync', tmp)
        await fh.sync()
        this.fileSyncs++
      }
      step = 'close'
      await fh.close()
      fh = undefined
      step = 'rename'
      await fault?.('rename', tmp)
      await fsp.rename(tmp, final)
      placed = true
      step = 'dirsync'
      await this.dirSync.sync()
    } catch (err) {
      await fh?.close().catch(() => undefined)
      // No half-written file stays; a renamed file whose directory fsync failed goes too, since the sender will
      // get a 4xx and send again.
      await fsp.unlink(placed ? final : tmp).catch(() => undefined)
      throw new SpoolWriteError(step, placed ? final : tmp, err)
    }
  }

  /** Check the limits and count the message as in flight, with no await between the two (no overshoot). */
  private async reserve(size: number): Promise<void> {
    let free = Number.POSITIVE_INFINITY
    if (this.opts.minFreeBytes > 0) {
      try {
        free = await this.gauge.available()
      } catch (err) {
        throw new SpoolWriteError('statfs', this.opts.dir, err)
      }
    }
    const full = this.fullReason(size, free)
    if (full) throw new SpoolFullError(full.limit, full.detail)
    this.inflightMessages++
    this.inflightBytes += size
    this.gauge.reserve(size)
  }

  /** Which limit one more message of `size` bytes would break, counting writes still in flight. */
  private fullReason(size: number, free: number): { limit: SpoolFullError['limit']; detail: string } | null {
    const { maxMessages, maxBytes, minFreeBytes } = this.opts
    const messages = this.index.size + this.inflightMessages
    const bytes = this.bytes + this.inflightBytes
    if (messages + 1 > maxMessages) {
      return { limit: 'maxMessages', detail: `${messages} messages spooled, limit ${maxMessages}` }
    }
    if (bytes + size > maxBytes) {
      return { limit: 'maxBytes', detail: `${bytes} bytes spooled + ${size} would pass the limit of ${maxBytes}` }
    }
    if (free - size < minFreeBytes) {
      return { limit: 'minFreeBytes', detail: `${free} bytes free on the spool disk, keeping ${minFreeBytes}` }
    }
    return null
  }

  /** Index every message file in `names` (and its newest sidecar). Returns how many files were quarantined. */
  private async scan(names: string[], atOpen: boolean): Promise<number> {
    const msgs = new Set<string>()
    const envs = new Map<string, number[]>()
    for (const name of names) {
      const p = parseName(name)
      if (p.kind === 'message') msgs.add(p.id)
      else if (p.kind === 'envelope') envs.set(p.id, [...(envs.get(p.id) ?? []), p.seq])
    }
    let quarantined = 0
    if (atOpen) {
      for (const [id, seqs] of envs) {
        // A sidecar without its message file: remove() got as far as deleting the message. Finish the job.
        if (!msgs.has(id)) for (const s of seqs) await fsp.unlink(join(this.opts.dir, envName(id, s))).catch(() => 0)
      }
    }
    const todo = [...msgs].filter((id) => {
      const known = this.index.get(id)
      const top = Math.max(0, ...(envs.get(id) ?? []))
      return !known || top > known.seq
    })
    for (let i = 0; i < todo.length; i++) {
      const id = todo[i]!
      const seqs = (envs.get(id) ?? []).sort((a, b) => b - a)
      const q = await this.exclusive(id, () => this.load(id, seqs, atOpen))
      quarantined += q // not `+= await`: that would read `quarantined` before the await
      // Header reads are synchronous (see files.ts): let the event loop breathe between batches.
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((r) => setImmediate(r))
    }
    return quarantined
  }

  /** Load one message's header and newest valid sidecar into the index. Returns the number of files quarantined. */
  private async load(id: string, seqsDesc: number[], atOpen: boolean): Promise<number> {
    const { dir } = this.opts
    let quarantined = 0
    let base: SpoolEntry
    try {
      base = readMessageHeader(dir, msgName(id))
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return 0 // removed meanwhile by another process
      await this.quarantine(msgName(id), err instanceof SpoolCorruptError ? err.reason : String(err))
      this.drop(id)
      return 1
    }
    let best: Indexed = { entry: base, seq: 0 }
    for (const seq of seqsDesc) {
      if (seq <= (this.index.get(id)?.seq ?? -1)) break
      try {
        const env = readEnvelope(dir, envName(id, seq))
        if (env.size !== base.size || env.from !== base.from) throw new SpoolCorruptError(envName(id, seq), 'mismatch')
        best = { entry: env, seq }
        break
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') continue // superseded by a newer one meanwhile
        // Falling back to an older envelope may repeat a delivery, never lose one.
        await this.quarantine(envName(id, seq), err instanceof SpoolCorruptError ? err.reason : String(err))
        quarantined++
      }
    }
    if (atOpen) {
      for (const seq of seqsDesc) {
        if (seq < best.seq) await fsp.unlink(join(dir, envName(id, seq))).catch(() => undefined)
      }
    }
    const known = this.index.get(id)
    if (!known || best.seq > known.seq) this.put(id, { entry: freeze(best.entry), seq: best.seq })
    return quarantined
  }

  private async quarantine(name: string, reason: string): Promise<void> {
    const aside = join(this.opts.dir, 'quarantine', `${name}.${Date.now()}`)
    await fsp.rename(join(this.opts.dir, name), aside).catch(() => undefined)
    this.log.error({ file: name, quarantinedAs: aside, reason }, 'corrupt spool file moved to quarantine')
  }

  private put(id: string, ix: Indexed): void {
    this.bytes += ix.entry.size - (this.index.get(id)?.entry.size ?? 0)
    this.index.set(id, ix)
  }

  private drop(id: string): void {
    const ix = this.index.get(id)
    if (!ix) return
    this.bytes -= ix.entry.size
    this.index.delete(id)
  }

  /** Run `fn` after every earlier operation on the same id, so sidecar sequence numbers never collide. */
  private exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(id) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => undefined)
    this.chains.set(id, tail)
    void tail.then(() => {
      if (this.chains.get(id) === tail) this.chains.delete(id)
    })
    return run
  }

  private mustBeOpen(): void {
    if (!this.opened) throw new SpoolStateError(`spool ${this.opts.dir} is not open: await open() first`)
  }
}

function freeze(e: SpoolEntry): SpoolEntry {
  for (const a of [e.to, e.pending, e.done, e.bounced, e.lastErrors]) Object.freeze(a)
  return Object.freeze(e)
}

function definedOnly(patch: EntryPatch): EntryPatch {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as EntryPatch
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file)
    return true
  } catch {
    return false
  }
}

function ignoreEnoent(err: unknown): void {
  if (errnoOf(err) !== 'ENOENT') throw err
}
