// Throwaway redis-server processes for tests and the scenario suite: each on a free loopback port with its own temp dir, never the system
// Redis on 6379. Every process is killed by its test's teardown, and by a process 'exit' hook as a safety net.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort } from './free-port'
import { reap } from './reaper'

export { freePort }

const REDIS_SERVER = process.env.MXGATE_TEST_REDIS_SERVER ?? '/usr/bin/redis-server'
const READY_TIMEOUT_MS = 10_000

export interface RedisProcess {
  port: number
  /** redis://127.0.0.1:PORT for a server, redis-sentinel://127.0.0.1:PORT/NAME for a sentinel. */
  url: string
  dir: string
  /** Graceful stop (SIGTERM), waits for exit, removes the temp dir. Idempotent: use it in t.teardown. */
  stop(): Promise<void>
  /** Crash (SIGKILL), waits for exit: clients see the connection drop. Keeps the dir for restart(). */
  kill(): Promise<void>
  /** Start again on the same port and dir (after stop or kill), waits until it answers. */
  restart(): Promise<void>
}

export interface StartRedisOptions {
  /** Listen on this port (e.g. one a client already retries against); default a free one. */
  port?: number
  /** appendonly yes with fsync always, so data survives kill + restart. Default: no persistence at all. */
  persist?: boolean
  /** Extra redis-server arguments, e.g. ['--requirepass', 'x']. */
  args?: string[]
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

/** Send one inline command and return the raw reply text (enough to check readiness). */
export function rawCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let reply = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no reply to ${command} from 127.0.0.1:${port} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.write(`${command}\r\n`))
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8')
      // One reply is enough; a complete one ends with CRLF (arrays of bulk strings too, once all parts arrived).
      if (reply.endsWith('\r\n') && isComplete(reply)) {
        clearTimeout(timer)
        socket.end()
        resolve(reply)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

// A RESP reply is complete when every announced array element / bulk string has arrived.
function isComplete(reply: string): boolean {
  const lines = reply.split('\r\n')
  let pos = 0
  const next = (): boolean => {
    const line = lines[pos++]
    if (line === undefined || line === '') return false
    const type = line[0]
    const n = Number(line.slice(1))
    if (type === '*') {
      for (let i = 0; i < n; i++) if (!next()) return false
      return true
    }
    if (type === '$') {
      if (n < 0) return true
      return lines[pos++] !== undefined && pos < lines.length
    }
    return true
  }
  return next()
}

async function waitUntil(check: () => Promise<boolean>, what: string, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 25))
  }
  let log = ''
  try {
    log = readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')
  } catch {}
  throw new Error(`${what} did not become ready within ${READY_TIMEOUT_MS} ms; log tail:\n${log}`)
}

class Managed {
  child: ChildProcess | null = null
  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly argv: () => string[],
    private readonly ready: () => Promise<boolean>,
    private readonly what: string,
  ) {}

  async start(): Promise<void> {
    const child = reap(spawn(REDIS_SERVER, this.argv(), { cwd: this.dir, stdio: 'ignore' }))
    live.add(child)
    this.child = child
    let exited = false
    child.once('exit', () => {
      exited = true
      live.delete(child)
    })
    await waitUntil(
      async () => {
        if (exited) throw new Error(`${this.what} exited`)
        return this.ready()
      },
      this.what,
      path.join(this.dir, 'redis.log'),
    )
  }

  async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    this.child = null
    if (child === null || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill(signal)
    await exited
  }
}

async function startManaged(
  make: (port: number) => { argv: () => string[]; ready: () => Promise<boolean>; what: string },
  dir: string,
  fixedPort?: number,
): Promise<Managed> {
  let lastError: unknown
  // The port can be taken between freePort() and bind; try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = fixedPort ?? (await freePort())
    const { argv, ready, what } = make(port)
    const managed = new Managed(port, dir, argv, ready, what)
    try {
      await managed.start()
      return managed
    } catch (err) {
      lastError = err
      await managed.end('SIGKILL')
    }
  }
  throw lastError
}

// stop() also removes the temp dir; kill() keeps it so restart() finds the same data (with persist: true).
function handle(managed: Managed, url: string): RedisProcess {
  let cleaned = false
  return {
    port: managed.port,
    url,
    dir: managed.dir,
    stop: async () => {
      await managed.end('SIGTERM')
      if (!cleaned) rmSync(managed.dir, { recursive: true, force: true })
      cleaned = true
    },
    kill: () => managed.end('SIGKILL'),
    restart: async () => {
      if (cleaned) throw new Error(`restart of ${url} after stop(): use kill() to keep its dir`)
      await managed.end('SIGKILL')
      await managed.start()
    },
  }
}

/** Spawn a redis-server on a free 127.0.0.1 port. Call stop() (or kill()) in t.teardown. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mxgate-redis-'))
  const persistence = opts.persist
    ? ['--appendonly', 'yes', '--appendfsync', 'always']
    : ['--appendonly', 'no', '--save', '']
  const managed = await startManaged(
    (port) => ({
      argv: () => [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--logfile',
        path.join(dir, 'redis.log'),
        '--daemonize',
        'no',
        ...persistence,
        ...(opts.args ?? []),
      ],
      ready: async () => (await rawCommand(port, 'PING')).startsWith('+PONG'),
      what: `redis-server on 127.0.0.1:${port}`,
    }),
    dir,
    opts.port,
  )
  return handle(managed, `redis://127.0.0.1:${managed.port}`)
}

export interface StartSentinelOptions {
  masterName?: string
  /** How long the master must be unreachable before this sentinel fails it over. Default 5000 ms. */
  downAfterMs?: number
}

/** Spawn a Sentinel watching the master on 127.0.0.1:masterPort (quorum 1, so it fails over alone). */
export async function startSentinel(masterPort: number, opts: StartSentinelOptions = {}): Promise<RedisProcess> {
  const masterName = opts.masterName ?? 'mxgate-test'
  const downAfterMs = opts.downAfterMs ?? 5000
  const dir = mkdtempSync(path.join(tmpdir(), 'mxgate-sentinel-'))
  const config = path.join(dir, 'sentinel.conf')
  const managed = await startManaged(
    (port) => ({
      argv: () => {
        // Sentinel rewrites its config file, so it must be a fresh writable file per start.
        writeFileSync(
          config,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            `dir ${dir}`,
            `logfile ${path.join(dir, 'redis.log')}`,
            `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
            `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
            `sentinel failover-timeout ${masterName} ${Math.max(downAfterMs * 4, 2000)}`,
            '',
          ].join('\n'),
        )
        return [config, '--sentinel']
      },
      ready: async () =>
        (await rawCommand(port, `SENTINEL get-master-addr-by-name ${masterName}`)).includes(String(masterPort)),
      what: `redis sentinel on 127.0.0.1:${port}`,
    }),
    dir,
  )
  return handle(managed, `redis-sentinel://127.0.0.1:${managed.port}/${masterName}`)
}

export interface TcpProxy {
  port: number
  url: string
  /** Drop every connection and refuse new ones: a network partition between one client and Redis. */
  cut(): Promise<void>
  /** Accept connections again on the same port. */
  heal(): Promise<void>
  stop(): Promise<void>
}

/** A loopback TCP proxy to 127.0.0.1:targetPort, so one store can be cut off while others stay connected. */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort })
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address from the proxy')
  const port = address.port
  const close = async () => {
    for (const s of sockets) s.destroy()
    if (server.listening) {
      server.close()
      await once(server, 'close')
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cut: close,
    heal: async () => {
      if (server.listening) return
      server.listen(port, '127.0.0.1')
      await once(server, 'listening')
    },
    stop: close,
  }
}

/** Poll `check` every 20 ms until it returns true; fail naming `what` after `timeoutMs` (bounded in count too). */
export async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (check()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  if (!check()) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
}

export interface RedisCluster {
  nodes: RedisProcess[]
  /** redis-cluster://127.0.0.1:P1,127.0.0.1:P2,... */
  url: string
  stop(): Promise<void>
}

/** Start `masters` cluster-enabled servers and join them with redis-cli --cluster create (no replicas). */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisProcess[] = []
  const stop = async () => {
    for (const n of nodes) await n.stop()
  }
  try {
    for (let i = 0; i < masters; i++) {
      // The bus port defaults to port + 10000, which can run past 65535 for a high free port: pick it too.
      const busPort = await freePort()
      nodes.push(
        await startRedis({
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort)],
        }),
      )
    }
    const create = spawn(
      REDIS_SERVER.replace(/redis-server$/, 'redis-cli'),
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { stdio: 'ignore' },
    )
    live.add(create)
    const [code] = (await once(create, 'exit')) as [number | null]
    live.delete(create)
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}`)
    // Each node learns the slot map over the cluster bus on its own: one saying ok does not mean the others do,
    // and a client that meets a node still in CLUSTERDOWN drops its connection and retries.
    for (const node of nodes)
      await waitUntil(
        async () => (await rawCommand(node.port, 'CLUSTER INFO')).includes('cluster_state:ok'),
        `redis cluster node ${node.port}`,
        path.join(node.dir, 'redis.log'),
      )
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, url: `redis-cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`, stop }
}
