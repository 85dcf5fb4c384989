// Several real `mxgate start` processes sharing one Redis, each with its own spool dir and admin port, plus the
// small HTTP and SMTP tools the cluster tests use on them. Every process is stopped by stop() (use it in teardown).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BackendView } from '../admin/types'
import type { FakeBackend } from './fake-backend'
import { type MxgateProcess, startMxgate } from './mxgate-process'
import { makeTestMessage, type SendResult, sendMessage } from './smtp-sender'

export interface ClusterNode {
  /** A, B, C…: how the test talks about the node (the store knows it as hostname:pid). */
  label: string
  proc: MxgateProcess
  adminUrl: string
  spoolDir: string
}

export interface MxgateCluster {
  nodes: ClusterNode[]
  /** The node labelled `label`; throws for an unknown one. */
  node(label: string): ClusterNode
  /** Stops every node (SIGTERM, waits), then starts them again on the same Redis, spool dirs and config. */
  restart(): Promise<void>
  /** Stops every node and removes the config and spool dirs. Idempotent. */
  stop(): Promise<void>
}

export interface StartClusterOptions {
  redisUrl: string
  backends: FakeBackend[]
  /** Backend weights by id (default 100 each). */
  weights?: Record<string, number>
  /** MXGATE_ADMIN_TOKEN for every node. */
  token: string
  /** Contents of DIR/mxgate.ini passed as `--config DIR` (short breaker timings). */
  ini: string
  labels?: string[]
  /** Another built checkout to run the nodes from (default: this one). */
  root?: string
}

export async function startCluster(opts: StartClusterOptions): Promise<MxgateCluster> {
  const labels = opts.labels ?? ['A', 'B', 'C']
  const root = mkdtempSync(path.join(tmpdir(), 'mxgate-cluster-'))
  const configDir = path.join(root, 'config')
  mkdirSync(configDir)
  writeFileSync(path.join(configDir, 'mxgate.ini'), opts.ini)
  const weightOf = (id: string) => (opts.weights?.[id] === undefined ? '' : `*${opts.weights[id]}`)
  const backends = opts.backends.map((b) => `${b.id}=127.0.0.1:${b.port}${weightOf(b.id)}`).join(',')
  const spoolDirs = labels.map((l) => path.join(root, `spool-${l}`))
  let nodes: ClusterNode[] = []

  const startAll = async () => {
    const started = await Promise.allSettled(
      labels.map((label, i) =>
        startMxgate({
          backends,
          args: ['--config', configDir],
          ...(opts.root === undefined ? {} : { root: opts.root }),
          env: {
            MXGATE_REDIS_URL: opts.redisUrl,
            MXGATE_ADMIN_TOKEN: opts.token,
            MXGATE_SPOOL_DIR: spoolDirs[i]!,
          },
        }).then((proc) => ({ label, proc, adminUrl: `http://127.0.0.1:${proc.adminPort}`, spoolDir: spoolDirs[i]! })),
      ),
    )
    nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
    const failed = started.find((s) => s.status === 'rejected')
    if (failed) {
      await stopAll()
      throw failed.reason
    }
  }
  const stopAll = async () => {
    await Promise.all(nodes.map((n) => n.proc.stop()))
  }

  await startAll().catch((err: unknown) => {
    rmSync(root, { recursive: true, force: true })
    throw err
  })
  let stopped = false
  return {
    get nodes() {
      return nodes
    },
    node(label: string) {
      const n = nodes.find((x) => x.label === label)
      if (!n) throw new Error(`no cluster node labelled ${label}; have ${nodes.map((x) => x.label).join(', ')}`)
      return n
    },
    async restart() {
      await stopAll()
      await startAll()
    },
    async stop() {
      if (stopped) return
      stopped = true
      await stopAll()
      rmSync(root, { recursive: true, force: true })
    },
  }
}

export interface ApiReply {
  status: number
  body: unknown
}

/** One admin API request; `token` undefined sends no Authorization header. */
export async function api(
  node: ClusterNode,
  method: 'GET' | 'POST',
  pathname: string,
  opts: { body?: unknown; token?: string; authorization?: string } = {},
): Promise<ApiReply> {
  const headers: Record<string, string> = { accept: 'application/json' }
  // The admin API takes changes as JSON only, even an empty one.
  if (opts.body !== undefined || method === 'POST') headers['content-type'] = 'application/json'
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  if (opts.authorization !== undefined) headers.authorization = opts.authorization
  const res = await fetch(`${node.adminUrl}${pathname}`, {
    method,
    headers,
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // /metrics and friends are text
  }
  return { status: res.status, body }
}

/** GET /api/backends as id → view, plus the node's name in the store. */
export async function backendsOf(node: ClusterNode): Promise<{ node: string; byId: Map<string, BackendView> }> {
  const r = await api(node, 'GET', '/api/backends')
  if (r.status !== 200)
    throw new Error(`GET /api/backends on node ${node.label} answered ${r.status}: ${JSON.stringify(r.body)}`)
  const body = r.body as { node: string; backends: BackendView[] }
  return { node: body.node, byId: new Map(body.backends.map((b) => [b.id, b])) }
}

/** id → state on one node. */
export async function statesOf(node: ClusterNode): Promise<Record<string, string>> {
  const { byId } = await backendsOf(node)
  return Object.fromEntries([...byId].map(([id, b]) => [id, b.state]))
}

/** Polls `check` every 50 ms until it resolves true; false after `ms` (bounded in count too). */
export async function eventuallyAsync(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  for (let i = 0; i < 2000 && Date.now() < until; i++) {
    if (await check().catch(() => false)) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return check().catch(() => false)
}

export interface Batch {
  /** Message-IDs (without brackets) in send order. */
  ids: string[]
  results: SendResult[]
}

/**
 * Sends `count` messages spread round-robin over `nodes`, at most `concurrency` at once, each with Message-ID
 * `${tag}-${i}@cluster.test`. `onProgress` sees the number finished so far (to act mid-load).
 */
export async function sendSpread(
  nodes: ClusterNode[],
  tag: string,
  count: number,
  concurrency: number,
  onProgress?: (done: number) => void | Promise<void>,
): Promise<Batch> {
  const ids = Array.from({ length: count }, (_, i) => `${tag}-${i}@cluster.test`)
  const results: SendResult[] = new Array(count)
  let next = 0
  let done = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      const node = nodes[i % nodes.length]!
      results[i] = await sendMessage({
        host: '127.0.0.1',
        port: node.proc.port,
        from: 'sender@remote.test',
        to: ['user@example.com'],
        message: makeTestMessage({ messageId: ids[i]! }),
        timeoutMs: 30_000,
      })
      await onProgress?.(++done)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, () => worker()))
  return { ids, results }
}

/** How many of `ids` each backend received, by backend id. */
export function countsByBackend(backends: FakeBackend[], ids: readonly string[]): Record<string, number> {
  const wanted = new Set(ids)
  return Object.fromEntries(
    backends.map((b) => [b.id, b.received.filter((m) => m.messageId !== null && wanted.has(m.messageId)).length]),
  )
}
