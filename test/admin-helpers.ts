// Test seam for the admin API: an AdminPort over Maps that records every change call, a pino sink for audit
// lines, and a running admin server torn down with the test. The lead's end-to-end tests run the real engine.
import { Writable } from 'node:stream'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { Test } from 'tap'
import { parseTokens } from '../src/admin/auth'
import { type AdminServer, startAdminServer } from '../src/admin/server'
import {
  type Actor,
  type AdminPort,
  type BackendView,
  type HistoryView,
  type NodeView,
  type ReadinessView,
  type ReloadView,
  type SpoolItemView,
  type StatusView,
  UnknownIdError,
} from '../src/admin/types'

export interface PortCall {
  op: string
  id: string | undefined
  reason?: string
  forMs?: number | null
  actor: Actor
}

type SpoolDetail = ReturnType<AdminPort['spool']['show']>

export const T0 = Date.parse('2026-11-28T10:00:00Z')

export function backendView(id: string, over: Partial<BackendView> = {}): BackendView {
  return {
    id,
    address: `127.0.0.1:${2600 + id.length}`,
    weight: 1,
    state: 'admitted',
    reason: null,
    since: T0,
    until: null,
    by: null,
    inFlight: 0,
    successRatio: 1,
    messagesPerMinute: 120,
    ...over,
  }
}

export function spoolItem(id: string, over: Partial<SpoolItemView> = {}): SpoolDetail {
  return {
    id,
    from: 'alice@sender.example',
    to: ['bob@example.com'],
    pending: ['bob@example.com'],
    receivedAt: T0,
    attempts: 2,
    nextAttemptAt: T0 + 300_000,
    held: false,
    size: 2048,
    lastError: 'mx2 dot 451 4.3.0 Temporary failure',
    lastErrors: [{ backendId: 'mx2', stage: 'dot', message: '451 4.3.0 Temporary failure', at: T0 }],
    ...over,
  }
}

/** An AdminPort over Maps; `calls` records every change with its actor, so tests can prove who did what. */
export class MemoryAdminPort implements AdminPort {
  nodeName = 'node-a'
  readonly calls: PortCall[] = []
  readonly backendsById = new Map<string, BackendView>()
  readonly messages = new Map<string, SpoolDetail>()
  ready: ReadinessView = { ready: true, reasons: [] }
  alive = true
  /** When set, the next change throws this (to prove the server hides internals). */
  failNext: Error | null = null
  /** When set, changes wait for this before answering (to prove the change timeout). */
  stall: Promise<void> | null = null
  metrics = new Registry()
  readonly spool: AdminPort['spool']
  /** Replays record their request in `calls` and answer as if the backend had taken `replayable` messages. */
  replayable = 0
  readonly journal: AdminPort['journal']

  constructor(backends: BackendView[] = [backendView('mx1'), backendView('mx2'), backendView('mx3')]) {
    for (const b of backends) this.backendsById.set(b.id, b)
    const port = this
    this.spool = {
      list: () => [...port.messages.values()].map(({ lastErrors: _, ...item }) => item),
      show: (id) => port.message(id),
      async flush(id, actor) {
        await port.changeGate({ op: 'flush', id, actor })
        if (id !== undefined) port.message(id)
        return id === undefined ? port.messages.size : 1
      },
      async hold(id, actor) {
        await port.changeGate({ op: 'hold', id, actor })
        return port.updateMessage(id, { held: true })
      },
      async release(id, actor) {
        await port.changeGate({ op: 'release', id, actor })
        return port.updateMessage(id, { held: false })
      },
      async bounce(id, actor) {
        await port.changeGate({ op: 'bounce', id, actor })
        port.message(id)
        port.messages.delete(id)
      },
    }
    this.journal = {
      list: async (backend, since, until) => {
        port.backend(backend)
        return { node: port.nodeName, backend, since, until, entries: [] }
      },
      async replay(req, actor) {
        await port.changeGate({ op: 'replay', id: req.backend, actor })
        port.backend(req.backend)
        const messages = port.replayable
        return { node: port.nodeName, ...req, messages, bytes: messages * 1000, skipped: 0, error: null }
      },
    }
  }

  configVersion = 'abc123def456'
  nodeList: NodeView[] = []
  /** What the next reload answers; a ReloadRefusedError here is thrown (a broken file). */
  reloadResult: ReloadView | Error = {
    node: 'node-a',
    previousVersion: 'abc123def456',
    configVersion: 'fed654cba321',
    files: ['/etc/mxgate/mxgate.ini'],
    added: ['mx4'],
    removed: ['mx3'],
    reweighted: [],
    changed: ['breaker.minVolume'],
    needsRestart: [
      { key: 'smtp.listen', running: { host: '127.0.0.1', port: 25 }, file: { host: '0.0.0.0', port: 25 } },
    ],
    notes: [],
  }

  nodes(): NodeView[] {
    return this.nodeList
  }

  async reload(actor: Actor): Promise<ReloadView> {
    await this.changeGate({ op: 'reload', id: undefined, actor })
    if (this.reloadResult instanceof Error) throw this.reloadResult
    return this.reloadResult
  }

  private async changeGate(call: PortCall): Promise<void> {
    this.calls.push(call)
    if (this.stall) await this.stall
    const fail = this.failNext
    this.failNext = null
    if (fail) throw fail
  }

  private message(id: string): SpoolDetail {
    const m = this.messages.get(id)
    if (!m) throw new UnknownIdError('message', id, [...this.messages.keys()])
    return m
  }

  private updateMessage(id: string, change: Partial<SpoolItemView>): SpoolItemView {
    const next = { ...this.message(id), ...change }
    this.messages.set(id, next)
    const { lastErrors: _, ...item } = next
    return item
  }

  private update(id: string, change: Partial<BackendView>): BackendView {
    const next = { ...this.backend(id), ...change, since: Date.now() }
    this.backendsById.set(id, next)
    return next
  }

  backends(): BackendView[] {
    return [...this.backendsById.values()]
  }

  backend(id: string): BackendView {
    const b = this.backendsById.get(id)
    if (!b) throw new UnknownIdError('backend', id, [...this.backendsById.keys()])
    return b
  }

  async eject(id: string, reason: string, forMs: number | null, actor: Actor): Promise<BackendView> {
    await this.changeGate({ op: 'eject', id, reason, forMs, actor })
    const until = forMs === null ? null : Date.now() + forMs
    return this.update(id, { state: 'manual-ejected', reason, until, by: actor.by })
  }

  async drain(id: string, reason: string, actor: Actor): Promise<BackendView> {
    await this.changeGate({ op: 'drain', id, reason, actor })
    return this.update(id, { state: 'draining', reason, until: null, by: actor.by })
  }

  async restore(id: string, actor: Actor): Promise<BackendView> {
    await this.changeGate({ op: 'restore', id, actor })
    return this.update(id, { state: 'probation', reason: 'restored by operator', until: null, by: null })
  }

  healthy(): boolean {
    return this.alive
  }

  readiness(): ReadinessView {
    return this.ready
  }

  /** What history() answers; the window asked for is recorded in `historyWindows`. */
  historyView: Omit<HistoryView, 'node'> = {
    now: T0,
    from: T0 - 1_800_000,
    to: T0,
    stepMs: 30_000,
    backends: {},
    pool: [],
    events: [],
  }
  readonly historyWindows: number[] = []

  status(): StatusView {
    const messages = [...this.messages.values()]
    return {
      node: this.nodeName,
      now: Date.now(),
      backends: this.backends(),
      readiness: this.ready,
      spool: {
        open: true,
        messages: messages.length,
        bytes: messages.reduce((n, m) => n + m.size, 0),
        held: messages.filter((m) => m.held).length,
        full: false,
        oldestReceivedAt: messages.length > 0 ? Math.min(...messages.map((m) => m.receivedAt)) : null,
      },
      redis: { configured: false, up: true },
      detector: { mode: 'enforce', poolDegraded: false, budgetFrozen: false },
    }
  }

  history(windowMs: number): HistoryView {
    this.historyWindows.push(windowMs)
    return { node: this.nodeName, ...this.historyView }
  }
}

/** A pino logger whose JSON lines land in `lines` (parsed). */
export function logSink(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      cb()
    },
  })
  return { log: pino({ level: 'info' }, stream), lines }
}

export interface TestAdmin {
  port: MemoryAdminPort
  server: AdminServer
  url: string
  lines: Record<string, unknown>[]
}

/** The token startTestAdmin configures and request() sends unless told otherwise (a bare token: its name is "admin"). */
export const TEST_TOKEN = 'admin-test-token-5e1d'

/** Starts the real admin server on a free loopback port (token TEST_TOKEN unless `tokens` says); stopped at the end. */
export async function startTestAdmin(
  t: Test,
  opts: { tokens?: string | null; port?: MemoryAdminPort; host?: string; changeTimeoutMs?: number } = {},
): Promise<TestAdmin> {
  const port = opts.port ?? new MemoryAdminPort()
  const { log, lines } = logSink()
  const server = await startAdminServer({
    listen: { host: opts.host ?? '127.0.0.1', port: 0 },
    tokens: parseTokens(opts.tokens === undefined ? TEST_TOKEN : opts.tokens),
    port,
    log,
    ...(opts.changeTimeoutMs === undefined ? {} : { changeTimeoutMs: opts.changeTimeoutMs }),
  })
  t.teardown(() => server.close())
  const host = server.address.host.includes(':') ? `[${server.address.host}]` : server.address.host
  return { port, server, url: `http://${host}:${server.address.port}`, lines }
}

export interface HttpReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: unknown
}

/**
 * One HTTP request with Node's own client (not the CLI's), so server tests do not depend on the CLI. It sends
 * TEST_TOKEN unless `token` names another one, or is null (no Authorization header).
 */
export async function request(
  url: string,
  method: string,
  path: string,
  opts: { body?: string | Buffer | object; token?: string | null; headers?: Record<string, string> } = {},
): Promise<HttpReply> {
  const http = await import('node:http')
  const payload =
    opts.body === undefined
      ? undefined
      : typeof opts.body === 'string' || Buffer.isBuffer(opts.body)
        ? opts.body
        : JSON.stringify(opts.body)
  const headers: Record<string, string> = { ...opts.headers }
  const token = opts.token === undefined ? TEST_TOKEN : opts.token
  if (token !== null && headers.authorization === undefined) headers.authorization = `Bearer ${token}`
  // Changes must be JSON: a POST says so even without a body, unless the test sets its own content type.
  const hasType = Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')
  if ((payload !== undefined || method === 'POST') && !hasType) headers['content-type'] = 'application/json'
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method, headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`request ${method} ${path} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}
