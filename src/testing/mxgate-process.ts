// Runs the real `mxgate start` (Haraka and all) as a child process on free loopback ports (tests, scenario suite).
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { freePort } from './free-port'
import { reap } from './reaper'

export const ROOT = path.resolve(__dirname, '..', '..')
export const BIN = path.join(ROOT, 'bin', 'mxgate.js')

export interface MxgateProcess {
  port: number
  adminPort: number
  proc: ChildProcess
  /** Parsed JSON log lines from stdout (pino), in order. */
  logs: Record<string, unknown>[]
  /** Everything the node wrote to stdout, as written. */
  stdout: () => string
  stderr: () => string
  spoolDir: string
  /** SIGTERM, then SIGKILL after 10 s; resolves the exit code. */
  stop(): Promise<number | null>
}

export interface StartOptions {
  /** id=host:port list for MXGATE_BACKENDS. */
  backends: string
  domains?: string
  env?: Record<string, string>
  args?: string[]
  /** Leave the spool directory behind at stop (a test restarts a node on it). */
  keepSpool?: boolean
  /** Another built checkout to run `bin/mxgate.js` and `config/` from (default: this one). */
  root?: string
}

/** Between two looks of a bounded poll. */
const POLL_MS = 100

/** Polls the node's parsed log lines until `done(lines)` holds; throws naming `what` after `ms`. */
export async function waitForLogs(
  node: MxgateProcess,
  done: (lines: Record<string, unknown>[]) => boolean,
  what: string,
  ms = 10_000,
): Promise<void> {
  const until = Date.now() + ms
  while (!done(node.logs)) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for the node to log: ${what}`)
    await new Promise((r) => setTimeout(r, POLL_MS / 5))
  }
}

async function waitForBanner(port: number, ms: number, proc: ChildProcess): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until && proc.exitCode === null && proc.signalCode === null) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('data', (d) => {
        s.destroy()
        resolve(d.toString().startsWith('220'))
      })
      s.once('error', () => resolve(false))
      s.setTimeout(1000, () => {
        s.destroy()
        resolve(false)
      })
    })
    if (ok) return true
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
  return false
}

export async function startMxgate(opts: StartOptions): Promise<MxgateProcess> {
  const port = await freePort()
  const adminPort = await freePort()
  // A spool dir of our own unless the caller names one (a restart on the same spool); ours is removed at stop.
  const given = opts.env?.MXGATE_SPOOL_DIR
  const spoolDir = given ?? mkdtempSync(path.join(os.tmpdir(), 'mxgate-e2e-spool-'))
  const removeSpool = given === undefined && !opts.keepSpool
  const proc = reap(
    spawn(process.execPath, [path.join(opts.root ?? ROOT, 'bin', 'mxgate.js'), 'start', ...(opts.args ?? [])], {
      cwd: opts.root ?? ROOT,
      env: {
        ...process.env,
        MXGATE_LISTEN: `127.0.0.1:${port}`,
        MXGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        MXGATE_BACKENDS: opts.backends,
        MXGATE_DOMAINS: opts.domains ?? 'example.com',
        // No load balancer watches a test's node: it stops without the grace period unless a test sets one.
        MXGATE_SHUTDOWN_GRACE: '0',
        ...opts.env,
        MXGATE_SPOOL_DIR: spoolDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  const logs: Record<string, unknown>[] = []
  let partial = ''
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    partial += d.toString()
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) {
      if (!l.startsWith('{')) continue
      try {
        logs.push(JSON.parse(l) as Record<string, unknown>)
      } catch {
        // a line that is not JSON: the log-stream test reads stdout() for those
      }
    }
  })
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
    proc.kill('SIGTERM')
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    const code = await exited
    clearTimeout(t)
    if (removeSpool) rmSync(spoolDir, { recursive: true, force: true })
    return code
  }
  if (!(await waitForBanner(port, 40_000, proc))) {
    await stop()
    throw new Error(`mxgate did not start on port ${port}: ${err}`)
  }
  return { port, adminPort, proc, logs, stdout: () => out, stderr: () => err, stop, spoolDir }
}

/** Runs `mxgate ARGS` to completion; resolves its exit code and output. */
export async function runMxgate(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = reap(spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } }))
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
    proc.once('exit', (code) => {
      clearTimeout(t)
      resolve({ code, stdout, stderr })
    })
  })
}
