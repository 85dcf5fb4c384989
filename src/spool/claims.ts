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
import { promises as fsp, type Stats } from 'node:fs'
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

  /**
   * Give the claim back. A claim that was already stolen (lease ran out) is left to its new holder; then false: the
   * new holder may have delivered what this holder delivered too.
   */
  async release(claim: Claim): Promise<boolean> {
    const next = this.nextPath(claim.id, claim.token)
    if (!(await this.createNext(next))) {
      this.log.warn({ id: claim.id, owner: claim.owner }, 'claim is being taken over by another process; not released')
      return false
    }
    try {
      const seen = await this.read(claim.id)
      if (seen === 'absent' || seen.gen !== claim.gen) {
        this.log.warn({ id: claim.id, owner: claim.owner }, 'claim was taken over after its lease ran out')
        return false
      }
      await fsp.unlink(this.path(claim.id)).catch(ignoreEnoent)
      return true
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
        // Temp files of a writer killed between writing and linking them.
        const m = TMP_RE.exec(name)
        const deadWriter = m?.[1] === HOST_TAG && Number(m[2]) !== process.pid && !pidAlive(Number(m[2]))
        const st = await fsp.stat(full).catch(() => null)
        if (st && (deadWriter || now - st.mtimeMs > STUCK_NEXT_MS)) await fsp.unlink(full).catch(() => undefined)
        continue
      }
      if (name.endsWith('.next')) {
        await this.clearStuckNext(full, now)
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

  /**
   * Create the `.next` marker for one claim generation; false when it exists already. It appears whole (linked from
   * a written temp file), so whoever finds it can read who made it and clear it at once if that process is dead.
   */
  private async createNext(next: string): Promise<boolean> {
    const tmp = await this.writeTempFile(
      randomBytes(9).toString('hex'),
      JSON.stringify({ pid: process.pid, host: HOST_TAG, at: Date.now() }),
    )
    try {
      await fsp.link(tmp, next)
      return true
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') return false
      throw err
    } finally {
      await fsp.unlink(tmp).catch(() => undefined)
    }
  }

  /**
   * A `.next` marker outlives its creator only if that process died between creating and removing it. Clear it
   * at once when its creator on this host is dead, else after STUCK_NEXT_MS, by renaming it aside and checking it
   * is the same file, so a fresh marker is never lost.
   */
  private async clearStuckNext(next: string, now: number): Promise<void> {
    let st: Stats
    let text: string
    try {
      const fh = await fsp.open(next, 'r')
      try {
        st = await fh.stat()
        text = await fh.readFile('utf8')
      } finally {
        await fh.close()
      }
    } catch {
      return
    }
    if (!creatorDead(text) && now - st.mtimeMs < STUCK_NEXT_MS) return
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
    const tmp = await this.writeTempFile(rec.token, JSON.stringify(rec))
    const st = await fsp.stat(tmp)
    return { tmp, gen: st.size > 0 ? rec.token : `ino${st.ino}` }
  }

  /** A temp file holding `content`, or empty when the disk is full (an empty claim still excludes the others). */
  private async writeTempFile(tag: string, content: string): Promise<string> {
    const tmp = join(this.dir, `.tmp-${HOST_TAG}-${process.pid}-${tag}`)
    const fh = await fsp.open(tmp, 'wx')
    try {
      await fh.writeFile(content)
    } catch (err) {
      if (!diskFull(err)) {
        await fh.close().catch(() => undefined)
        await fsp.unlink(tmp).catch(() => undefined)
        throw err
      }
      await fh.truncate(0)
    }
    await fh.close()
    return tmp
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

const TMP_RE = /^\.tmp-([0-9a-f]{8})-(\d+)-/

/** True when a `.next` marker's content names a process on this host that no longer exists. */
function creatorDead(text: string): boolean {
  try {
    const v = JSON.parse(text) as { pid?: unknown; host?: unknown }
    return typeof v.pid === 'number' && v.host === HOST_TAG && v.pid !== process.pid && !pidAlive(v.pid)
  } catch {
    return false
  }
}

function diskFull(err: unknown): boolean {
  const code = errnoOf(err)
  return code === 'ENOSPC' || code === 'EDQUOT'
}

function ignoreEnoent(err: unknown): void {
  if (errnoOf(err) !== 'ENOENT') throw err
}
