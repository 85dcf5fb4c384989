// Small disk helpers for the spool: group-committed directory fsync, free-space gauge, process liveness.
import { createHash } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { hostname } from 'node:os'

/** A file-system step the store is about to take; a fault hook can throw to simulate EIO/ENOSPC in tests. */
export type FsOp = 'open' | 'write' | 'fsync' | 'rename' | 'dirsync' | 'unlink' | 'read'
export type FaultHook = (op: FsOp, path: string) => void | Promise<void>
/** What the spool has done on disk, told as it happens, so a test can check the order (real files, real fsyncs). */
export type FsEvent = 'renamed' | 'dirsync-begin' | 'dirsync-end'
export type FsTrace = (event: FsEvent, path: string) => void

/** fsync a directory so that entries created, renamed or removed in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

interface Waiter {
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Group commit for one directory. Every caller has renamed its file into the directory before calling sync();
 * callers that arrive while an fsync is running wait for the next one, because the running fsync may have begun
 * before their rename. So no caller resolves before an fsync that started after its own rename, and any number of
 * concurrent callers share one fsync.
 */
export class DirSyncer {
  /** Directory fsyncs actually issued (for tests and metrics). */
  syncs = 0
  private running = false
  private waiting: Waiter[] = []

  constructor(
    private readonly dir: string,
    private readonly enabled: boolean,
    private readonly fault?: FaultHook,
    private readonly trace?: FsTrace,
  ) {}

  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      if (!this.running) this.kick()
    })
  }

  private kick(): void {
    const batch = this.waiting
    this.waiting = []
    this.running = true
    this.syncs++
    const done = (err: unknown): void => {
      for (const w of batch) {
        if (err === undefined) w.resolve()
        else w.reject(err)
      }
      this.running = false
      if (this.waiting.length > 0) this.kick()
    }
    const run = async (): Promise<void> => {
      await this.fault?.('dirsync', this.dir)
      this.trace?.('dirsync-begin', this.dir)
      await fsyncDir(this.dir)
      this.trace?.('dirsync-end', this.dir)
    }
    run().then(
      () => done(undefined),
      (err: unknown) => done(err ?? new Error('directory fsync failed')),
    )
  }
}

/** Bytes available to an unprivileged user on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await fsp.statfs(dir)
  return s.bavail * s.bsize
}

/**
 * Free space with a short cache: statfs on every write would be one more syscall on the hot path. Between
 * refreshes the bytes this process reserved are subtracted, so a burst cannot overshoot by more than what other
 * processes write in `maxAgeMs`.
 */
export class FreeSpaceGauge {
  private value = Number.POSITIVE_INFINITY
  private at = 0
  private reservedSince = 0

  constructor(
    private readonly dir: string,
    private readonly maxAgeMs = 1000,
  ) {}

  async available(now = Date.now()): Promise<number> {
    if (now - this.at >= this.maxAgeMs) {
      this.value = await freeBytes(this.dir)
      this.at = now
      this.reservedSince = 0
    }
    return this.value - this.reservedSince
  }

  stale(now = Date.now()): boolean {
    return now - this.at >= this.maxAgeMs
  }

  /** The last known value without touching the disk (for stats()). */
  cached(): number {
    return this.value - this.reservedSince
  }

  reserve(bytes: number): void {
    this.reservedSince += bytes
  }
}

/** True when a process with this pid exists on this host (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A short, file-name-safe tag for this host, so a pid is only judged dead by a process on the same host. */
export const HOST_TAG = createHash('sha1').update(hostname()).digest('hex').slice(0, 8)
