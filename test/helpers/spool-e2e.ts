// Helpers for the spool end-to-end tests: real mxgate processes on a spool dir the test owns, fake backends, the
// admin API, spool files on disk, and DSNs as a smarthost receives them. Everything started here is stopped in
// the test's teardown.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { FakeBackend, type FakeBackendOptions, type ReceivedMessage } from '../../src/testing/fake-backend'
import { type SendResult, sendMessage } from '../../src/testing/smtp-sender'
import { type MxgateProcess, startMxgate } from './mxgate-process'
import { parseMetrics } from './prom'

export async function backend(t: Test, opts: FakeBackendOptions = {}): Promise<FakeBackend> {
  const b = new FakeBackend(opts)
  await b.start()
  t.teardown(() => b.stop())
  return b
}

/** A temp dir removed at teardown (config dirs, spool dirs that outlive one process). */
export function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A config dir holding mxgate.ini with `ini`, for `--config DIR`. */
export function configDir(t: Test, ini: string): string {
  const dir = tempDir(t, 'mxgate-spool-e2e-cfg-')
  writeFileSync(path.join(dir, 'mxgate.ini'), ini)
  return dir
}

export interface Node {
  proc: MxgateProcess
  adminUrl: string
  port: number
  /** The admin token file the node generated in its spool dir (no admin.token is configured in these tests). */
  tokenFile: string
}

export interface NodeOptions {
  backends: FakeBackend[]
  /** Config dir from configDir(). */
  config: string
  /** The spool dir; the test owns it (it is never removed by the node's stop). */
  spoolDir: string
  env?: Record<string, string>
}

/** Starts `mxgate start` on `spoolDir`; stopped (SIGTERM, then SIGKILL) at teardown if still running. */
export async function startNode(t: Test, o: NodeOptions): Promise<Node> {
  const proc = await startMxgate({
    backends: o.backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','),
    args: ['--config', o.config],
    keepSpool: true,
    // No admin.token from the caller's shell: the node generates its token file, which api() and the CLI read.
    env: { MXGATE_ADMIN_TOKEN: '', MXGATE_SPOOL_DIR: o.spoolDir, ...o.env },
  })
  // startMxgate made its own temp dir before our env replaced it: remove that one.
  const own = proc.spoolDir
  if (own !== o.spoolDir) rmSync(own, { recursive: true, force: true })
  t.teardown(() => proc.stop())
  return {
    proc,
    adminUrl: `http://127.0.0.1:${proc.adminPort}`,
    port: proc.port,
    tokenFile: path.join(o.spoolDir, 'admin.token'),
  }
}

export function send(node: Node, to: string[], message: Buffer, from = 'sender@remote.test'): Promise<SendResult> {
  return sendMessage({ host: '127.0.0.1', port: node.port, from, to, message, timeoutMs: 30_000 })
}

export interface ApiReply<T = unknown> {
  status: number
  body: T
}

/** One admin API request over loopback, with the token the node generated into its token file. */
export async function api<T = unknown>(
  node: Node,
  method: 'GET' | 'POST',
  pathname: string,
  body?: unknown,
): Promise<ApiReply<T>> {
  const token = readFileSync(node.tokenFile, 'utf8').trim()
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (method === 'POST') headers['content-type'] = 'application/json'
  const res = await fetch(`${node.adminUrl}${pathname}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // text endpoints
  }
  return { status: res.status, body: parsed as T }
}

export interface SpoolItem {
  id: string
  from: string
  to: string[]
  pending: string[]
  held: boolean
  attempts: number
  nextAttemptAt: number
  lastError: string | null
}

export async function spoolList(node: Node): Promise<SpoolItem[]> {
  const r = await api<{ messages: SpoolItem[] }>(node, 'GET', '/api/spool')
  if (r.status !== 200) throw new Error(`GET /api/spool answered ${r.status}: ${JSON.stringify(r.body)}`)
  return r.body.messages
}

const POLL_MS = 100

/** Polls an async condition every POLL_MS (at most 600 times) until it holds or `ms` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  for (let i = 0; i < 600 && Date.now() < until; i++) {
    if (await Promise.resolve(check()).catch(() => false)) return true
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
  return Promise.resolve(check()).catch(() => false)
}

export interface RunnerCounts {
  rounds: number
  pickups: number
  inFlight: number
  delivered: number
  bounced: number
  expired: number
}

/** The spool runner's counters from the node's /metrics. */
export async function runnerCounts(node: Node): Promise<RunnerCounts> {
  const r = await api<string>(node, 'GET', '/metrics')
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}`)
  const m = parseMetrics(String(r.body))
  return {
    rounds: m.value('mxgate_spool_runner_rounds'),
    pickups: m.value('mxgate_spool_runner_pickups'),
    inFlight: m.value('mxgate_spool_runner_in_flight'),
    delivered: m.value('mxgate_spool_settled_total', { how: 'delivered' }),
    bounced: m.value('mxgate_spool_settled_total', { how: 'bounced' }),
    expired: m.value('mxgate_spool_settled_total', { how: 'expired' }),
  }
}

/**
 * Waits until the spool runner has finished a whole round that began after this call, with nothing it picked up
 * still in flight: whatever the runner decides about the spool as it is now, it has decided and done. This is the
 * positive event behind "X did not happen" (rounds run every second, so this takes one to two seconds).
 */
export async function runnerLookedAgain(node: Node, ms = 10_000): Promise<RunnerCounts> {
  const start = await runnerCounts(node)
  let last = start
  // Round start.rounds + 1 may have begun before this call; round start.rounds + 2 began after it had finished.
  const done = await eventually(async () => {
    last = await runnerCounts(node)
    return last.rounds >= start.rounds + 2 && last.inFlight === 0
  }, ms)
  if (!done) throw new Error(`the spool runner did not finish a round within ${ms} ms: ${JSON.stringify(last)}`)
  return last
}

/** Names in the spool dir by kind: complete messages, envelope sidecars, temp files. */
export function spoolFiles(dir: string): { msg: string[]; env: string[]; tmp: string[] } {
  const names = readdirSync(dir)
  return {
    msg: names.filter((n) => n.endsWith('.msg')),
    env: names.filter((n) => n.endsWith('.env')),
    tmp: names.filter((n) => n.startsWith('.tmp-')),
  }
}

/** Receipts per Message-ID over several backends. */
export function receipts(backends: FakeBackend[]): Map<string, ReceivedMessage[]> {
  const by = new Map<string, ReceivedMessage[]>()
  for (const b of backends) {
    for (const m of b.received) {
      if (m.messageId === null) continue
      by.set(m.messageId, [...(by.get(m.messageId) ?? []), m])
    }
  }
  return by
}

/** How often each recipient got the message with this Message-ID. */
export function deliveriesPerRecipient(backends: FakeBackend[], messageId: string): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const m of receipts(backends).get(messageId) ?? []) for (const r of m.to) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

export interface Dsn {
  envelopeFrom: string
  envelopeTo: string[]
  contentType: string
  /** Per-recipient fields of the message/delivery-status part, lower-cased names. */
  recipients: Record<string, string>[]
  /** The text of the whole DSN. */
  text: string
}

/** Reads a DSN as a smarthost received it: envelope, top content type, per-recipient status groups. */
export function parseDsn(m: ReceivedMessage): Dsn {
  const text = m.raw.toString('utf8')
  const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
  const contentType = /^content-type:\s*(.*)$/im.exec(head)?.[1] ?? ''
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1]
  const recipients: Record<string, string>[] = []
  if (boundary) {
    const parts = text.split(`--${boundary}`)
    const status = parts.find((p) => /content-type:\s*message\/delivery-status/i.test(p)) ?? ''
    const fields = status.slice(status.indexOf('\r\n\r\n') + 4)
    for (const group of fields.split(/\r\n\r\n/).slice(1)) {
      const rec: Record<string, string> = {}
      for (const line of group.split('\r\n')) {
        const i = line.indexOf(':')
        if (i > 0) rec[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      if (rec['final-recipient']) recipients.push(rec)
    }
  }
  return { envelopeFrom: m.from, envelopeTo: m.to, contentType, recipients, text }
}
