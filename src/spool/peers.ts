// Which processes use a spool directory. Each one that opens the spool leaves nodes/<host>-<pid>; a process that
// sees another live one knows its in-memory index can go stale (the other may deliver, update or remove any message)
// and re-reads the directory before acting. This does not depend on configuration: two nodes started on the same
// MXGATE_SPOOL_DIR by mistake are as safe as Haraka's workers, which share one on purpose.
import { promises as fsp } from 'node:fs'
import { join } from 'node:path'
import { HOST_TAG, pidAlive } from './disk'

/** How often a process refreshes its entry's mtime, so that processes on other hosts can judge it alive. */
const HEARTBEAT_MS = 60_000
/** An entry from another host counts as alive while its mtime is younger than this. */
const OTHER_HOST_LEASE_MS = 5 * HEARTBEAT_MS

const NAME_RE = /^([0-9a-f]{8})-(\d+)$/

export class SpoolPeers {
  private readonly dir: string
  private readonly own = `${HOST_TAG}-${process.pid}`
  private heartbeat: NodeJS.Timeout | null = null

  constructor(spoolDir: string) {
    this.dir = join(spoolDir, 'nodes')
  }

  /** Announce this process; clear entries of dead processes on this host. */
  async register(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true })
    for (const name of await fsp.readdir(this.dir)) {
      const m = NAME_RE.exec(name)
      if (m && m[1] === HOST_TAG && name !== this.own && !pidAlive(Number(m[2]))) {
        await fsp.unlink(join(this.dir, name)).catch(() => undefined)
      }
    }
    // The name says all; an empty file needs no free space, so a full disk cannot stop a node from starting.
    await (await fsp.open(join(this.dir, this.own), 'a')).close()
    this.heartbeat ??= setInterval(() => {
      const now = new Date()
      fsp.utimes(join(this.dir, this.own), now, now).catch(() => undefined)
    }, HEARTBEAT_MS)
    this.heartbeat.unref()
  }

  /** True when another live process has this spool directory open (one readdir of a tiny directory). */
  async othersPresent(now = Date.now()): Promise<boolean> {
    let names: string[]
    try {
      names = await fsp.readdir(this.dir)
    } catch {
      return false
    }
    for (const name of names) {
      if (name === this.own) continue
      const m = NAME_RE.exec(name)
      if (!m) continue
      if (m[1] === HOST_TAG) {
        if (pidAlive(Number(m[2]))) return true
        continue
      }
      const st = await fsp.stat(join(this.dir, name)).catch(() => null)
      if (st && now - st.mtimeMs < OTHER_HOST_LEASE_MS) return true
    }
    return false
  }

  /** Leave: others stop treating the directory as shared with us. */
  async unregister(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.heartbeat = null
    await fsp.unlink(join(this.dir, this.own)).catch(() => undefined)
  }
}
