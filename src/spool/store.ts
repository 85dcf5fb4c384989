// SpoolStore: durable local storage for messages no backend took yet. One file per message; see
// docs/spool-format.md for the format, the write protocol and what survives which crash.
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { Logger } from '../log'
import type { InboundMessage } from '../message'
import { Catalog, type Indexed } from './catalog'
import { type Claim, ClaimFiles } from './claims'
import { DirSyncer, type FaultHook, FreeSpaceGauge, type FsTrace, fsyncDir } from './disk'
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
  discardDeadTemps,
  envName,
  msgName,
  parseName,
  placeDurably,
  readEnvelope,
  readMessageBody,
  readMessageHeader,
} from './files'
import {
  encodeEnvelope,
  encodeMessageHead,
  type LastError,
  MAX_LAST_ERRORS,
  type SpoolEntry,
  validateEntry,
} from './format'
import { SpoolPeers } from './peers'
import { UnreadableFiles } from './unreadable'

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
  /** Test hook: told after each rename into the directory and around each directory fsync. */
  trace?: FsTrace
}

export interface WriteMeta {
  /** Recipients still to deliver (default: all); the other envelope recipients are recorded as done. */
  pending?: string[]
  trace?: string
  attempts?: number
  nextAttemptAt?: number
  lastErrors?: LastError[]
  /** Recipients already refused for good, owed a DSN: in the same durable write, so a crash cannot lose it. */
  bounced?: { rcpt: string; reply: string }[]
  /** Backends never to deliver it to (replay of what one of them took and may have lost). */
  avoid?: string[]
}

export type EntryPatch = Partial<
  Pick<SpoolEntry, 'pending' | 'done' | 'bounced' | 'attempts' | 'nextAttemptAt' | 'lastErrors' | 'trace' | 'held'>
>

export interface SpoolStats {
  messages: number
  bytes: number
  full: boolean
  reason: string | null
  /** Messages held only because their DSN could not be sent (outside the limits; bounded by held_dsn_max). */
  heldDsn: number
  /** Message files that could not be read (EIO, EMFILE, EACCES, ...) and are retried; not quarantined. */
  unreadable: number
}

/** The result of record(): the entry as it now stands, and whether that is on disk. */
export interface Recorded {
  entry: SpoolEntry
  saved: boolean
  /** Why it is not on disk (ENOSPC, EIO, ...), when saved is false. */
  error?: SpoolWriteError
}

/** stats() judges "full" by the last refused message's size, but never by more than this. */
const READY_PROBE_CAP = 1024 * 1024
/** After a message write fails (ENOSPC, EIO), stats() reports the spool full for this long. */
const WRITE_FAILURE_MS = 10_000

/** Files indexed between two turns of the event loop at startup and refresh (about 10-50 ms of work). */
const YIELD_EVERY = 256

export class SpoolStore {
  private readonly index: Catalog
  private opened = false
  private readonly dirSync: DirSyncer
  private readonly gauge: FreeSpaceGauge
  private readonly claims: ClaimFiles
  private readonly peers: SpoolPeers
  private readonly chains = new Map<string, Promise<unknown>>()
  private readonly syncCount = { file: 0 }
  /** Size of the last message refused for a limit (capped), until there is room for it again: for stats(). */
  private refusedSize = 1
  /** The last failed message write, cleared by a successful one: for stats(). */
  private writeFailure: { at: number; errno: string } | null = null
  /** Messages whose file (or newest envelope) could not be read for a reason other than corruption, by id. */
  private readonly unreadable: UnreadableFiles

  constructor(
    private readonly opts: SpoolOptions,
    private readonly log: Logger,
  ) {
    for (const key of ['maxMessages', 'maxBytes', 'minFreeBytes'] as const) {
      const v = opts[key]
      if (!Number.isFinite(v) || v < 0) throw new SpoolConfigError(key, `must be a number >= 0, got ${String(v)}`)
    }
    if (!opts.dir) throw new SpoolConfigError('dir', 'must be a directory path')
    this.index = new Catalog(opts)
    this.dirSync = new DirSyncer(opts.dir, opts.fsync, opts.fault, opts.trace)
    this.gauge = new FreeSpaceGauge(opts.dir)
    this.claims = new ClaimFiles(join(opts.dir, 'claims'), opts.claimLeaseMs ?? 15 * 60_000, log)
    this.peers = new SpoolPeers(opts.dir)
    this.unreadable = new UnreadableFiles(log)
  }

  /** A reload changed the limits: the next message is checked against them. */
  setLimits(limits: Pick<SpoolOptions, 'maxMessages' | 'maxBytes' | 'minFreeBytes'>): void {
    this.opts.maxMessages = limits.maxMessages
    this.opts.maxBytes = limits.maxBytes
    this.opts.minFreeBytes = limits.minFreeBytes
  }

  /** Directory fsyncs issued; lower than the number of writes when concurrent writes were group-committed. */
  get dirSyncs(): number {
    return this.dirSync.syncs
  }

  /** File fsyncs issued (each written file gets its own). */
  get fileSyncs(): number {
    return this.syncCount.file
  }

  private place(name: string, bufs: Buffer[]): Promise<void> {
    const { dir, fsync, fault, trace } = this.opts
    return placeDurably(dir, name, bufs, { fsync, fault, trace, dirSync: this.dirSync, counter: this.syncCount })
  }

  /** Create the directories, discard temp files of dead writers, index every complete file, quarantine bad ones. */
  async open(): Promise<{ resumed: number; discardedTemp: number; quarantined: number }> {
    const { dir } = this.opts
    await fsp.mkdir(join(dir, 'claims'), { recursive: true })
    await fsp.mkdir(join(dir, 'quarantine'), { recursive: true })
    if (this.opts.fsync) {
      // A freshly created spool dir must itself survive a crash, or every file in it is lost with it.
      await fsyncDir(dirname(resolve(dir)))
      await fsyncDir(dir)
    }
    if (this.opts.minFreeBytes > 0) await this.gauge.available()
    // Announce ourselves before indexing: from here on, a process already running here re-reads before it acts.
    await this.peers.register()
    const names = await fsp.readdir(dir)
    const discardedTemp = await discardDeadTemps(dir, names, this.opts.tempMaxAgeMs ?? 3_600_000)
    const before = this.index.size
    const quarantined = await this.scan(names, true)
    await this.claims.sweep((id) => this.index.has(id))
    this.opened = true
    const resumed = this.index.size - before
    this.log.info({ dir, resumed, discardedTemp, quarantined, bytes: this.index.bytes }, 'spool opened')
    return { resumed, discardedTemp, quarantined }
  }

  /**
   * True when another live process uses this directory (Haraka workers, or two nodes given the same directory):
   * the index may then be stale, and callers refresh() before acting on an entry.
   */
  sharedWithOthers(): Promise<boolean> {
    this.mustBeOpen()
    return this.peers.othersPresent()
  }

  /** Stop announcing this process in the directory (at shutdown; a crashed process is recognised as dead). */
  async close(): Promise<void> {
    await this.peers.unregister()
  }

  /** Pick up files written, updated or removed by other processes sharing the directory (one readdir). */
  async refresh(): Promise<{ added: number; removed: number; updated: number }> {
    this.mustBeOpen()
    // Only ids indexed before the readdir can be judged gone: a write that lands during it is not in `names`.
    const known = this.index.ids()
    const names = await fsp.readdir(this.opts.dir)
    const present = new Set<string>()
    for (const name of names) {
      const p = parseName(name)
      if (p.kind === 'message') present.add(p.id)
    }
    let removed = 0
    for (const id of known) {
      if (this.index.has(id) && !present.has(id) && !this.chains.has(id)) {
        this.index.drop(id)
        removed++
      }
    }
    const before = this.index.size
    const seqsBefore = this.index.seqs()
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
        done: to.filter((r) => !pending.includes(r) && !(meta.bounced ?? []).some((b) => b.rcpt === r)),
        bounced: (meta.bounced ?? []).map((b) => ({ rcpt: b.rcpt, reply: b.reply })),
        receivedAt: msg.receivedAt,
        attempts: meta.attempts ?? 0,
        nextAttemptAt: meta.nextAttemptAt ?? now,
        lastErrors: (meta.lastErrors ?? []).slice(-MAX_LAST_ERRORS),
        trace: meta.trace ?? msg.id,
        held: false,
        size,
        ...(meta.avoid !== undefined && meta.avoid.length > 0 ? { avoid: [...meta.avoid] } : {}),
      }
      try {
        await this.place(msgName(id), [encodeMessageHead(entry, msg.body), msg.body])
      } catch (err) {
        if (err instanceof SpoolWriteError) this.writeFailure = { at: Date.now(), errno: err.errno }
        throw err
      }
      this.writeFailure = null
      this.index.put(id, { entry, seq: 0 })
      return this.index.get(id)!.entry
    } finally {
      this.index.end(size)
    }
  }

  list(): SpoolEntry[] {
    this.mustBeOpen()
    return this.index.entries()
  }

  get(id: string): SpoolEntry | undefined {
    return this.index.get(id)?.entry
  }

  /**
   * For /readyz. "Full" means the spool would refuse the next message: one of the size it last refused (up to
   * 1 MiB: a huge message alone should not take the node out), else of one byte; or a write met a full or broken
   * disk in the last WRITE_FAILURE_MS.
   */
  stats(now = Date.now()): SpoolStats {
    // Keep the free-space figure fresh for /readyz even when no writes come in (it is cached for a second).
    if (this.opts.minFreeBytes > 0 && this.gauge.stale()) {
      this.gauge.available().catch((err: unknown) => this.log.warn({ err }, 'statfs on the spool dir failed'))
    }
    const free = this.opts.minFreeBytes > 0 ? this.gauge.cached() : Number.POSITIVE_INFINITY
    let reason = this.index.fullReason(this.refusedSize, free)
    if (reason === null && this.refusedSize > 1) {
      // There is room again for what was refused: from now on only "nothing fits" makes the spool full.
      this.refusedSize = 1
      reason = this.index.fullReason(1, free)
    }
    let detail = reason?.detail ?? null
    const failed = this.writeFailure
    if (detail === null && failed && now - failed.at < WRITE_FAILURE_MS) {
      detail = `a write failed ${Math.round((now - failed.at) / 1000)}s ago (${failed.errno}); check the spool disk`
    }
    return {
      messages: this.index.size,
      bytes: this.index.bytes,
      full: detail !== null,
      reason: detail,
      heldDsn: this.index.heldDsn,
      unreadable: this.unreadable.size,
    }
  }

  /**
   * Reads the body for delivery. A corrupt file is quarantined; any other error (EIO, EMFILE, ...) is thrown and
   * the file left alone: the caller retries later.
   */
  async readBody(id: string): Promise<Buffer> {
    this.mustBeOpen()
    try {
      await this.opts.fault?.('read', join(this.opts.dir, msgName(id)))
      return await readMessageBody(this.opts.dir, id)
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') {
        this.index.drop(id)
        throw new SpoolNotFoundError(id)
      }
      if (err instanceof SpoolCorruptError) {
        await this.quarantine(msgName(id), err.reason)
        this.index.drop(id)
      }
      throw err
    }
  }

  /** Durably replace the envelope: a new sidecar <id>.<seq+1>.env (temp, fsync, rename, dir fsync). */
  async update(id: string, patch: EntryPatch): Promise<SpoolEntry> {
    this.mustBeOpen()
    return this.exclusive(id, () => this.updateNow(id, patch))
  }

  /**
   * update(), but when the disk refuses the write (ENOSPC, EIO) the patch is kept in memory instead of being lost:
   * the index then shows the progress (due() and the admin API see it) and re-reading the file never replaces it,
   * until saveUnsaved() or a later update() puts it on disk. The caller keeps the message's claim meanwhile, so no
   * other process acts on the older envelope on disk; a crash before the save can repeat a delivery, never lose one.
   */
  async record(id: string, patch: EntryPatch): Promise<Recorded> {
    this.mustBeOpen()
    return this.exclusive(id, async () => {
      try {
        return { entry: await this.updateNow(id, patch), saved: true }
      } catch (err) {
        if (!(err instanceof SpoolWriteError)) throw err
        const cur = this.index.get(id)
        if (!cur) throw new SpoolNotFoundError(id)
        const next = { ...cur.entry, ...definedOnly(patch) } as SpoolEntry
        next.lastErrors = next.lastErrors.slice(-MAX_LAST_ERRORS)
        this.index.put(id, { entry: next, seq: cur.seq, unsaved: true })
        this.log.warn(
          { id, errno: err.errno, err },
          'could not record delivery progress on disk; kept in memory and retried',
        )
        return { entry: this.index.get(id)!.entry, saved: false, error: err }
      }
    })
  }

  /** True while `id` has progress that only exists in memory (record() could not write it). */
  isUnsaved(id: string): boolean {
    return this.index.get(id)?.unsaved === true
  }

  /** Writes the in-memory progress of `id` to disk; resolves true once nothing is left unsaved. */
  async saveUnsaved(id: string): Promise<boolean> {
    this.mustBeOpen()
    return this.exclusive(id, async () => {
      if (!this.isUnsaved(id)) return true
      try {
        await this.updateNow(id, {})
      } catch (err) {
        if (err instanceof SpoolWriteError) return false
        throw err
      }
      this.log.info({ id }, 'delivery progress recorded on disk after all')
      return true
    })
  }

  /** Re-reads one message's newest envelope from disk (another process may have changed it); undefined if gone. */
  async reread(id: string): Promise<SpoolEntry | undefined> {
    this.mustBeOpen()
    await this.exclusive(id, () => this.reload(id))
    return this.get(id)
  }

  /** update() without the per-id chain: the caller holds it. */
  private async updateNow(id: string, patch: EntryPatch): Promise<SpoolEntry> {
    // Another process may have updated it since we indexed it: apply the patch to the newest envelope, and never
    // write a sidecar number that already exists. Progress kept in memory is newer than anything on disk.
    if (!this.isUnsaved(id) && (await this.peers.othersPresent())) await this.reload(id)
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
      this.index.drop(id)
      throw new SpoolNotFoundError(id)
    }
    const seq = cur.seq + 1
    await this.place(envName(id, seq), [encodeEnvelope(next)])
    // The old sidecar is now shadowed (highest seq wins), so its removal needs no fsync.
    if (cur.seq > 0) await fsp.unlink(join(this.opts.dir, envName(id, cur.seq))).catch(() => undefined)
    this.index.put(id, { entry: next, seq })
    return this.index.get(id)!.entry
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
      this.index.drop(id)
    })
  }

  /** Entries ready for another attempt: not held, something pending, nextAttemptAt <= now; oldest received first. */
  due(now: number, limit: number): SpoolEntry[] {
    this.mustBeOpen()
    return this.index.due(now, limit)
  }

  /** Claim a message for delivery across processes; null when someone else holds it or it is gone. `now` judges
   * whether another holder's lease ran out (tests pass a time past it rather than wait for it). */
  async claim(id: string, owner: string, now = Date.now()): Promise<Claim | null> {
    this.mustBeOpen()
    const c = await this.claims.acquire(id, owner, now)
    if (c && !(await exists(join(this.opts.dir, msgName(id))))) {
      await this.claims.release(c)
      this.index.drop(id)
      return null
    }
    return c
  }

  /** False when the claim had been taken over by another process (see ClaimFiles.release). */
  release(claim: Claim): Promise<boolean> {
    return this.claims.release(claim)
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
    const full = this.index.fullReason(size, free)
    if (full) {
      this.refusedSize = Math.max(1, Math.min(size, READY_PROBE_CAP))
      throw new SpoolFullError(full.limit, full.detail)
    }
    this.index.begin(size)
    this.gauge.reserve(size)
  }

  /** Re-read one message's newest envelope from disk (caller holds its exclusive chain). */
  private async reload(id: string): Promise<void> {
    const names = await fsp.readdir(this.opts.dir)
    const seqs: number[] = []
    let present = false
    for (const name of names) {
      const p = parseName(name)
      if (p.kind === 'message' && p.id === id) present = true
      else if (p.kind === 'envelope' && p.id === id) seqs.push(p.seq)
    }
    if (!present) {
      this.index.drop(id)
      this.unreadable.forget(id)
      return
    }
    await this.load(
      id,
      seqs.sort((a, b) => b - a),
      false,
    )
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
    const now = Date.now()
    const todo = [...msgs].filter((id) => {
      // An unreadable message is out of the index: read it on its own backoff (retryUnreadable), not on every refresh.
      if (!atOpen && this.unreadable.waiting(id, now)) return false
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

  /**
   * Load one message's header and newest valid sidecar into the index. Returns the number of files quarantined.
   * Only proven corruption (SpoolCorruptError) quarantines a file: any other read error (EIO, EMFILE, EACCES) leaves
   * it where it is, keeps the message out of the index (an older envelope could repeat deliveries) and is retried.
   */
  private async load(id: string, seqsDesc: number[], atOpen: boolean): Promise<number> {
    const { dir } = this.opts
    // Progress kept in memory after a failed write is newer than anything on disk.
    if (this.index.get(id)?.unsaved) return 0
    let quarantined = 0
    let base: SpoolEntry
    try {
      await this.opts.fault?.('read', join(dir, msgName(id)))
      base = readMessageHeader(dir, msgName(id))
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') {
        this.unreadable.forget(id)
        return 0 // removed meanwhile by another process
      }
      if (!(err instanceof SpoolCorruptError)) {
        this.cannotRead(id, msgName(id), err)
        return 0
      }
      await this.quarantine(msgName(id), err.reason)
      this.index.drop(id)
      this.unreadable.forget(id)
      return 1
    }
    let best: Indexed = { entry: base, seq: 0 }
    for (const seq of seqsDesc) {
      if (seq <= (this.index.get(id)?.seq ?? -1)) break
      try {
        await this.opts.fault?.('read', join(dir, envName(id, seq)))
        const env = readEnvelope(dir, envName(id, seq))
        if (env.size !== base.size || env.from !== base.from) throw new SpoolCorruptError(envName(id, seq), 'mismatch')
        best = { entry: env, seq }
        break
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') continue // superseded by a newer one meanwhile
        if (!(err instanceof SpoolCorruptError)) {
          // Not corrupt, just unreadable now: falling back to an older envelope would repeat deliveries for nothing.
          this.cannotRead(id, envName(id, seq), err)
          return quarantined
        }
        // Falling back to an older envelope may repeat a delivery, never lose one.
        await this.quarantine(envName(id, seq), err.reason)
        quarantined++
      }
    }
    this.unreadable.readable(id)
    if (atOpen) {
      for (const seq of seqsDesc) {
        if (seq < best.seq) await fsp.unlink(join(dir, envName(id, seq))).catch(() => undefined)
      }
    }
    const known = this.index.get(id)
    if (!known || best.seq > known.seq) this.index.put(id, { entry: best.entry, seq: best.seq })
    return quarantined
  }

  /**
   * Re-reads the files that could not be read, each on its own backoff (1 s doubling to 60 s). Call it
   * periodically (the spool runner does, each round); cheap when there are none.
   */
  async retryUnreadable(now = Date.now()): Promise<void> {
    this.mustBeOpen()
    for (const id of this.unreadable.due(now)) await this.exclusive(id, () => this.reload(id))
  }

  /** A read failed for a reason other than corruption: keep the file, hide the message, retry, alert once. */
  private cannotRead(id: string, file: string, err: unknown): void {
    this.index.drop(id)
    this.unreadable.failed(id, file, err)
  }

  private async quarantine(name: string, reason: string): Promise<void> {
    const aside = join(this.opts.dir, 'quarantine', `${name}.${Date.now()}`)
    await fsp.rename(join(this.opts.dir, name), aside).catch(() => undefined)
    this.log.error({ file: name, quarantinedAs: aside, reason }, 'corrupt spool file moved to quarantine')
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
