// Every process the bench starts is registered here and ended at the end, on errors and on SIGINT/SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'

type Cleanup = () => Promise<void> | void

const cleanups = new Set<Cleanup>()
const groups = new Set<number>()

/** Registers work to do at the end (stop a Postfix instance, remove a temp dir); returns an unregister. */
export function onCleanup(fn: Cleanup): () => void {
  cleanups.add(fn)
  return () => cleanups.delete(fn)
}

/** Runs every registered cleanup, newest first, each at most once; errors are reported, not thrown. */
export async function cleanupAll(): Promise<void> {
  const list = [...cleanups].reverse()
  cleanups.clear()
  for (const fn of list) {
    try {
      await fn()
    } catch (err) {
      process.stderr.write(`bench cleanup: ${(err as Error).message}\n`)
    }
  }
}

/** Last resort on process exit: SIGKILL every process group still registered (synchronous, no waiting). */
export function killGroupsSync(): void {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  groups.clear()
}

export interface Child {
  readonly pid: number
  readonly proc: ChildProcess
  alive(): boolean
  /** The last ~64 KB of stdout+stderr, to quote when the process fails to start. */
  output(): string
  /** SIGTERM to the whole process group, SIGKILL after graceMs; resolves when the leader has exited. */
  stop(graceMs?: number): Promise<void>
}

const KEEP = 64 * 1024

/**
 * Starts a command in its own process group (so workers it forks end with it) and registers it for cleanup.
 * `onStdout` sees stdout chunks as they come (smtp-sink's counters are read this way). With `logFile`, stdout and
 * stderr go straight to that file instead, so a chatty relay's log costs the load generator nothing.
 */
export function spawnChild(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; onStdout?: (chunk: Buffer) => void; logFile?: string } = {},
): Child {
  const logFd = opts.logFile === undefined ? undefined : openSync(opts.logFile, 'a')
  const proc = spawn(command, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd ?? process.cwd(),
    detached: true,
    stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
  })
  if (logFd !== undefined) closeSync(logFd)
  let out = ''
  let exited = false
  const keep = (c: Buffer): void => {
    out += c.toString('utf8')
    if (out.length > KEEP * 2) out = out.slice(-KEEP)
  }
  proc.stdout?.on('data', (c: Buffer) => {
    opts.onStdout?.(c)
    keep(c)
  })
  proc.stderr?.on('data', keep)
  const exitedP = new Promise<void>((resolve) => {
    proc.on('exit', () => {
      exited = true
      resolve()
    })
    proc.on('error', (err) => {
      out += `\nspawn ${command}: ${err.message}`
      exited = true
      resolve()
    })
  })
  const pid = proc.pid ?? -1
  if (pid > 0) groups.add(pid)

  const stop = async (graceMs = 3_000): Promise<void> => {
    unregister()
    const signal = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-pid, sig)
      } catch {
        // group already gone
      }
    }
    if (!exited && pid > 0) {
      signal('SIGTERM')
      const timer = setTimeout(() => signal('SIGKILL'), graceMs)
      await exitedP
      clearTimeout(timer)
    }
    // Workers that ignored SIGTERM die with the group.
    signal('SIGKILL')
    groups.delete(pid)
  }
  const unregister = onCleanup(() => stop())
  return {
    pid,
    proc,
    alive: () => !exited,
    output: () => {
      if (opts.logFile === undefined) return out.slice(-KEEP)
      try {
        return readFileSync(opts.logFile, 'utf8').slice(-KEEP) + out
      } catch {
        return out
      }
    },
    stop,
  }
}
