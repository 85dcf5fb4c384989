// CPU time and memory of a process tree, read from /proc: what a relay costs, not what the load generator costs.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

let ticksPerSecond: number | undefined
let pageBytes: number | undefined

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

function pageSize(): number {
  if (pageBytes === undefined) {
    try {
      pageBytes = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096
    } catch {
      pageBytes = 4096
    }
  }
  return pageBytes
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1')
  } catch {
    return undefined // the process ended between listing and reading: it simply is not in the tree any more
  }
}

/** Fields of /proc/PID/stat after the command name, which may itself hold spaces and parentheses. */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** The root and all its living descendants, found through every thread's `children` list. */
export function treePids(root: number): number[] {
  const out: number[] = []
  const queue = [root]
  const seen = new Set<number>()
  while (queue.length > 0 && out.length < 10_000) {
    const pid = queue.shift() as number
    if (seen.has(pid)) continue
    seen.add(pid)
    let tids: string[]
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue
    }
    out.push(pid)
    for (const tid of tids) {
      const kids = read(`/proc/${pid}/task/${tid}/children`)
      if (kids === undefined) continue
      for (const k of kids.split(' ')) if (k !== '' && k !== '\n') queue.push(Number(k))
    }
  }
  return out
}

/**
 * CPU ms used by the tree so far: utime+stime of every living process plus cutime+cstime, which hold the time of
 * descendants that already ended and were reaped (Postfix's smtpd/cleanup/smtp come and go). Take it before and
 * after a run and subtract.
 */
export function treeCpuMs(root: number): number {
  let ticks = 0
  for (const pid of treePids(root)) {
    const stat = read(`/proc/${pid}/stat`)
    if (stat === undefined) continue
    const f = statFields(stat)
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
  }
  return (ticks * 1000) / clockTicks()
}

/** The "Pss:" line of /proc/PID/smaps_rollup in bytes, or undefined when it cannot be read. */
export function pssBytes(smapsRollup: string): number | undefined {
  const m = /^Pss:\s+(\d+) kB/m.exec(smapsRollup)
  return m ? Number(m[1]) * 1024 : undefined
}

/**
 * Memory of the tree right now: the sum of each process's PSS (shared pages split between the processes that map
 * them), so Postfix's forty small processes are not charged forty times for libc. Falls back to RSS.
 */
export function treeMemBytes(root: number): number {
  let bytes = 0
  for (const pid of treePids(root)) {
    const rollup = read(`/proc/${pid}/smaps_rollup`)
    const pss = rollup === undefined ? undefined : pssBytes(rollup)
    if (pss !== undefined) {
      bytes += pss
      continue
    }
    const statm = read(`/proc/${pid}/statm`)
    if (statm !== undefined) bytes += Number(statm.split(' ')[1]) * pageSize()
  }
  return bytes
}

/** Samples the tree's memory (treeMemBytes) every `intervalMs` and keeps the peak of the sum. */
export class MemSampler {
  private peak = 0
  private timer: NodeJS.Timeout | undefined
  private readonly roots: number[]

  constructor(roots: number[], intervalMs = 100) {
    this.roots = [...roots]
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
    this.timer.unref()
  }

  private sample(): void {
    let sum = 0
    for (const root of this.roots) sum += treeMemBytes(root)
    if (sum > this.peak) this.peak = sum
  }

  /** Stops sampling (after one last sample) and returns the peak in bytes. */
  stop(): number {
    if (this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
      this.sample()
    }
    return this.peak
  }
}
