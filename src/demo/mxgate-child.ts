// Runs the real `mxgate start` as a child process on free loopback ports, the way an operator would, and turns its
// log into events. The demo owns the child: stop() ends it, killNow() is the last resort when the demo exits.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { freePort } from '../testing/free-port'
import { type DetectorNotice, type HealthEvent, type MessageEvent, parseLogLine } from './log-events'

export const ROOT = path.resolve(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'mxgate.js')

export class DemoStartError extends Error {
  readonly code = 'EDEMOSTART'
  constructor(message: string) {
    super(message)
    this.name = 'DemoStartError'
  }
}

export interface MxgateChildOptions {
  backends: readonly { id: string; host: string; port: number }[]
  domain: string
  /** Holds the demo's mxgate.ini, layered over config/mxgate.ini with --config. */
  configDir: string
  spoolDir: string
  startTimeoutMs: number
  /** A certificate and key for inbound STARTTLS, as production runs it; none = STARTTLS not offered. */
  tls?: { certFile: string; keyFile: string } | null
}

type Events = {
  health: [HealthEvent]
  detector: [DetectorNotice]
  message: [MessageEvent]
  exit: [number | null, NodeJS.Signals | null]
}

/** True once something on the port answers with a 220 banner. */
function answers220(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.once('data', (d) => done(d.toString('latin1').startsWith('220')))
    s.once('error', () => done(false))
    s.setTimeout(1000, () => done(false))
  })
}

/**
 * The environment for the child: the caller's, minus every MXGATE_* setting (the demo runs on built-in defaults
 * and in-memory state whatever the shell says), plus the demo's own listener, admin port, backends and spool.
 */
export function childEnv(base: NodeJS.ProcessEnv, own: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('MXGATE_')) env[k] = v
  return { ...env, ...own }
}

export class MxgateChild extends EventEmitter<Events> {
  private stderrText = ''
  private exitCode: number | null | undefined = undefined
  private readonly exited: Promise<number | null>
  private stopping: Promise<number | null> | null = null

  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
    readonly adminPort: number,
    /** The admin token the demo gave this node (MXGATE_ADMIN_TOKEN): no token file is written. */
    private readonly adminToken: string,
  ) {
    super()
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitCode = code
        this.emit('exit', code, signal)
        resolve(code)
      })
    })
    let partial = ''
    proc.stdout?.setEncoding('utf8')
    proc.stdout?.on('data', (chunk: string) => {
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        const e = parseLogLine(line)
        if (e?.kind === 'health') this.emit('health', e)
        else if (e?.kind === 'detector') this.emit('detector', e)
        else if (e?.kind === 'message') this.emit('message', e)
      }
    })
    proc.stderr?.setEncoding('utf8')
    proc.stderr?.on('data', (chunk: string) => {
      // Only the tail is kept: it is shown when mxgate fails to start or dies.
      this.stderrText = (this.stderrText + chunk).slice(-4000)
    })
  }

  /** Spawns `mxgate start --config DIR` and resolves once it answers 220; throws DemoStartError otherwise. */
  static async start(opts: MxgateChildOptions): Promise<MxgateChild> {
    const port = await freePort()
    const adminPort = await freePort()
    const adminToken = randomBytes(24).toString('hex')
    const env = childEnv(process.env, {
      MXGATE_LISTEN: `127.0.0.1:${port}`,
      MXGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      MXGATE_ADMIN_TOKEN: `demo:${adminToken}`,
      MXGATE_BACKENDS: opts.backends.map((b) => `${b.id}=${b.host}:${b.port}`).join(','),
      MXGATE_DOMAINS: opts.domain,
      MXGATE_SPOOL_DIR: opts.spoolDir,
      MXGATE_LOG_LEVEL: 'info',
      // No load balancer to warn: the demo's node stops at once.
      MXGATE_SHUTDOWN_GRACE: '0',
      ...(opts.tls ? { MXGATE_TLS_CERT: opts.tls.certFile, MXGATE_TLS_KEY: opts.tls.keyFile } : {}),
    })
    const proc = spawn(process.execPath, [BIN, 'start', '--config', opts.configDir], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const child = new MxgateChild(proc, port, adminPort, adminToken)
    const until = Date.now() + opts.startTimeoutMs
    while (Date.now() < until && child.running) {
      if (await answers220(port)) return child
      await new Promise((r) => setTimeout(r, 100))
    }
    const why = child.running
      ? `did not answer 220 on 127.0.0.1:${port} within ${opts.startTimeoutMs / 1000}s`
      : `exited with code ${child.exitCode} before answering`
    await child.stop()
    throw new DemoStartError(
      `mxgate ${why}; is dist/ built (npx tsc -p tsconfig.json)? its stderr:\n${child.stderr().trim() || '(empty)'}`,
    )
  }

  /** A change through the node's admin API, as an operator's `mxgate` command makes it; resolves the HTTP status. */
  async adminPost(apiPath: string, body: object = {}): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${apiPath}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.adminToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    })
    await res.arrayBuffer()
    return res.status
  }

  get pid(): number | undefined {
    return this.proc.pid
  }

  get running(): boolean {
    return this.exitCode === undefined
  }

  stderr(): string {
    return this.stderrText
  }

  /** SIGTERM (mxgate finishes messages in flight), SIGKILL after graceMs; resolves the exit code. */
  stop(graceMs = 10_000): Promise<number | null> {
    this.stopping ??= (async () => {
      if (!this.running) return this.exitCode ?? null
      this.proc.kill('SIGTERM')
      const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs)
      const code = await this.exited
      clearTimeout(t)
      return code
    })()
    return this.stopping
  }

  /** Synchronous SIGKILL for the demo's own exit path; does nothing once the child is gone. */
  killNow(): void {
    if (this.running) this.proc.kill('SIGKILL')
  }
}
