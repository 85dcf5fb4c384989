// Claims: which process is delivering a spooled message right now, safe across processes sharing one spool dir.
//
// A claim is the file claims/<id>.claim holding {owner, pid, host, at, token}. It is created with link(2) from a
// fully written temp file, so it appears atomically and only if absent: two processes can never both create it.
// Ending a claim generation (release by its holder, or steal by another process once the holder is dead or its
// lease ran out) first requires creating claims/<id>.<token>.next with O_EXCL. Only one process can create that
// file, so only one process ends a given generation; the winner checks that the claim still holds that token and
// then unlinks it (release) or renames its own claim over it (steal). docs/spool-format.md walks through the races.
//
// On a full disk a claim is an empty file (creating a name needs no data block; writing the record does): its
// generation is then its inode number and it is treated as stale only after the lease. A full spool must still be
// able to drain, and draining is what frees the disk.
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../log'
import { HOST_TAG, pidAlive } from './disk'
import { errnoOf } from './errors'

export interface Claim {
  id: string
  owner: string
  token: string
  /** Identity of this claim generation as readers see it: the token, or `ino<N>` for an empty (disk full) claim. */
  gen: string
  pid: number
  /** Epoch ms when the claim was taken. */
  at: number
}

interface ClaimRecord {
  owner: string
  pid: number
  host: string
  at: number
  token: string
}

/** How long a process that crashed inside a steal or release may leave its `.next` marker before others clear it. */
const STUCK_NEXT_MS = 60_000

export class ClaimFiles {
  constructor(
    private readonly dir: string,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  private path(id: string): string {
    return join(this.dir, `${id}.claim`)
  }

  private nextPath(id: string, gen: string): string {
    return join(this.dir, `${id}.${gen}.next`)
  }

  /** Take the claim on `id`, or null when a live process holds it. Does not check that the message exists. */
  async acquire(id: string, owner: string, now = Date.now()): Promise<Claim | null> {
    const rec: ClaimRecord = { owner, pid: process.pid, host: HOST_TAG, at: now, token: randomBytes(9).toString('hex') }
    const { tmp, gen } = await this.writeTemp(rec)
    try {
      // Bounded: the only loop case is "the claim vanished between link and read" (a release in between).
      for (let i = 0; i < 3; i++) {
        try {
          await fsp.link(tmp, this.path(id))
          return toClaim(id, rec, gen)
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err
        }
        const seen = await this.read(id)
        if (seen === 'absent') continue
        if (!this.isStale(seen, now)) return null
        return (await this.steal(id, seen, tmp, now)) ? toClaim(id, rec, gen) : null
      }
      return null
    } finally {
      await fsp.unlink(tmp).catch(() => undefined)
    }
  }

  /** Give the claim back. A claim that was already stolen (lease ran out) is left to its new holder. */
  async release(claim: Claim): Promise<void> {
    const next = this.nextPath(claim.id, claim.token)
    if (!(await this.createNext(next))) {
      this.log.warn({ id: claim.id, owner: claim.owner }, 'claim is being taken over by another process; not released')
      return
    }
    try {
      const seen = await this.read(claim.id)
      if (seen === 'absent' || seen.gen !== claim.gen) {
        this.log.warn({ id: claim.id, owner: claim.owner }, 'claim was taken over after its lease ran out')
        return
      }
      await fsp.unlink(this.path(claim.id)).catch(ignoreEnoent)
    } finally {
      await fsp.unlink(next).catch(() => undefined)
    }
  }

  /** Remove claim files whose message is gone and whose holder is dead or past its lease (startup hygiene). */
  async sweep(messageExists: (id: string) => boolean, now = Date.now()): Promise<number> {
    let removed = 0
    for (const name of await fsp.readdir(this.dir)) {
      const full = join(this.dir, name)
      if (name.startsWith('.tmp-')) {
        const st = await fsp.stat(full).catch(() => null)
        if (st && now - st.mtimeMs > STUCK_NEXT_MS) await fsp.unlink(full).catch(() => undefined)
        continue
      }
      if (!name.endsWith('.claim')) continue
      const id = name.slice(0, -'.claim'.length)
      if (messageExists(id)) continue
      const seen = await this.read(id)
      if (seen !== 'absent' && this.isStale(seen, now)) {
        if (await this.steal(id, seen, null, now)) removed++
      }
    }
    return removed
  }

  private isStale(seen: Present, now: number): boolean {
    if (seen.rec === null) return now - seen.mtimeMs > this.leaseMs
    if (seen.rec.host === HOST_TAG && seen.rec.pid !== process.pid && !pidAlive(seen.rec.pid)) return true
    return now - seen.rec.at > this.leaseMs
  }

  /**
   * End the generation `seen` and put `replacement` in its place (or nothing, when null). True when this process
   * did it; false when another process is doing it or already did.
   */
  private async steal(id: string, seen: Present, replacement: string | null, now: number): Promise<boolean> {
    const next = this.nextPath(id, seen.gen)
    if (!(await this.createNext(next))) {
      await this.clearStuckNext(next, now)
      return false
    }
    try {
      const again = await this.read(id)
      // Only the holder of `next` can end this generation, so if it is still there it stays until we act.
      if (again === 'absent' || again.gen !== seen.gen) return false
      if (replacement) await fsp.rename(replacement, this.path(id))
      else await fsp.unlink(this.path(id))
      this.log.warn(
        { id, previousOwner: seen.rec?.owner ?? null, previousPid: seen.rec?.pid ?? null },
        replacement ? 'took over a stale claim' : 'removed a stale claim',
      )
      return true
    } finally {
      await fsp.unlink(next).catch(() => undefined)
    }
  }

  private async createNext(next: string): Promise<boolean> {
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(next, 'wx')
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') return false
      throw err
    }
    try {
      // The marker's existence is what counts; its content only helps a person reading the directory.
      await fh.writeFile(JSON.stringify({ pid: process.pid, host: HOST_TAG, at: Date.now() }))
    } catch (err) {
      if (!diskFull(err)) throw err
    } finally {
      await fh.close()
    }
    return true
  }

  /**
   * A `.next` marker outlives its creator only if that process died between creating and removing it. Clear it
   * after STUCK_NEXT_MS by renaming it aside and checking it is the same file, so a fresh marker is never lost.
   */
  private async clearStuckNext(next: string, now: number): Promise<void> {
    const st = await fsp.stat(next).catch(() => null)
    if (!st || now - st.mtimeMs < STUCK_NEXT_MS) return
    const aside = `${next}.${randomBytes(6).toString('hex')}.stuck`
    try {
      await fsp.rename(next, aside)
    } catch {
      return
    }
    const moved = await fsp.stat(aside).catch(() => null)
    if (moved && moved.ino !== st.ino) {
      // We moved a fresh marker: put it back (link fails only if yet another one appeared).
      await fsp.link(aside, next).catch(() => undefined)
    }
    this.log.warn({ file: next }, 'cleared a claim marker left by a crashed process')
    await fsp.unlink(aside).catch(() => undefined)
  }

  /** The claim to be linked into place, and the generation readers will see for it. */
  private async writeTemp(rec: ClaimRecord): Promise<{ tmp: string; gen: string }> {
    const tmp = join(this.dir, `.tmp-${HOST_TAG}-${process.pid}-${rec.token}`)
    const fh = await fsp.open(tmp, 'wx')
    try {
      await fh.writeFile(JSON.stringify(rec))
      return { tmp, gen: rec.token }
    } catch (err) {
      if (!diskFull(err)) throw err
      // No room for the record: an empty claim still excludes everyone else (see the top of this file).
      await fh.truncate(0)
      return { tmp, gen: `ino${(await fh.stat()).ino}` }
    } finally {
      await fh.close()
    }
  }

  private async read(id: string): Promise<Seen> {
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(this.path(id), 'r')
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return 'absent'
      throw err
    }
    try {
      const st = await fh.stat()
      const text = await fh.readFile('utf8')
      const rec = parseRecord(text)
      return { rec, mtimeMs: st.mtimeMs, gen: rec ? rec.token : `ino${st.ino}` }
    } finally {
      await fh.close()
    }
  }
}

interface Present {
  /** null when the claim file does not parse (only on disk damage: claims appear whole via link). */
  rec: ClaimRecord | null
  mtimeMs: number
  /** Identity of this claim generation: its token. */
  gen: string
}
type Seen = Present | 'absent'

function parseRecord(text: string): ClaimRecord | null {
  try {
    const v = JSON.parse(text) as Partial<ClaimRecord>
    if (
      typeof v.owner === 'string' &&
      typeof v.pid === 'number' &&
      typeof v.host === 'string' &&
      typeof v.at === 'number' &&
      typeof v.token === 'string' &&
      /^[0-9a-f]{1,32}$/.test(v.token)
    ) {
      return v as ClaimRecord
    }
  } catch {
    // fall through
  }
  return null
}

function toClaim(id: string, rec: ClaimRecord, gen: string): Claim {
  return { id, owner: rec.owner, token: rec.token, gen, pid: rec.pid, at: rec.at }
}

function diskFull(err: unknown): boolean {
  const code = errnoOf(err)
  return code === 'ENOSPC' || code === 'EDQUOT'
}

function ignoreEnoent(err: unknown): void {
  if (errnoOf(err) !== 'ENOENT') throw err
}
