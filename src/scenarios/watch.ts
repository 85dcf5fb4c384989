// Watches both nodes while a scenario runs: GET /api/backends every `pollMs` (ejections, who is out at once, the
// state each backend left), and /metrics every `metricsMs` for the series the row's checks name (their peaks).
// An ejection seen on several nodes (one node ejects, the other follows through the store) is counted once.
import type { BackendView } from '../admin/types'
import type { Ejection } from './types'

export interface WatchedNode {
  label: string
  adminUrl: string
}

/**
 * The state the ejection budget bounds: ejected. A backend probing or on trial is on its way back; each node
 * recovers it on its own probe and trial, so one node may still have it on trial when another, which has already
 * re-admitted it, ejects a second backend within the budget. Counting that brief overlap as "two out" would measure
 * the nodes' recovery skew, not the budget.
 */
const OUT = new Set(['ejected'])

interface NodeEjection {
  node: string
  backend: string
  since: number
  until: number | null
  reason: string | null
  stateBefore: string | null
}

/** Merges per-node ejections into cluster ones: a node's copy joins an ejection still running when it began. */
export function mergeEjections(perNode: readonly NodeEjection[]): Omit<Ejection, 'atMessage' | 'ownMessages'>[] {
  const out: Omit<Ejection, 'atMessage' | 'ownMessages'>[] = []
  for (const e of [...perNode].sort((a, b) => a.since - b.since)) {
    const open = out.find(
      (x) =>
        x.backend === e.backend &&
        !x.nodes.includes(e.node) &&
        e.since >= x.since &&
        (x.until === null || e.since <= x.until),
    )
    if (open) open.nodes.push(e.node)
    else out.push({ ...e, nodes: [e.node] })
  }
  return out
}

/** Parses Prometheus text: series key (name{labels} as exposed) → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!m) continue
    out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]))
  }
  return out
}

/** Sum of the series named `name` whose labels include every one of `labels`. */
export function sumSeries(
  series: Map<string, number>,
  name: string,
  labels: Record<string, string> = {},
): number | null {
  let sum: number | null = null
  for (const [key, value] of series) {
    const brace = key.indexOf('{')
    if ((brace === -1 ? key : key.slice(0, brace)) !== name) continue
    const has = Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))
    if (has) sum = (sum ?? 0) + value
  }
  return sum
}

export interface MetricWatch {
  key: string
  name: string
  labels?: Record<string, string>
}

export class Watcher {
  private readonly seen = new Map<string, NodeEjection>()
  private readonly lastState = new Map<string, string>()
  private timers: NodeJS.Timeout[] = []
  private polling: Promise<void> = Promise.resolve()
  maxOut = 0
  maxOutWhich = ''
  readonly metricPeaks: Record<string, number> = {}
  errors = 0

  constructor(
    private readonly nodes: readonly WatchedNode[],
    private readonly token: string,
    private readonly metrics: readonly MetricWatch[],
  ) {}

  start(pollMs: number, metricsMs: number): void {
    const every = (ms: number, fn: () => Promise<void>) => {
      let busy = false
      const t = setInterval(() => {
        if (busy) return
        busy = true
        this.polling = fn()
          .catch(() => {
            this.errors++
          })
          .finally(() => {
            busy = false
          })
      }, ms)
      this.timers.push(t)
    }
    every(pollMs, () => this.pollBackends())
    if (this.metrics.length > 0) every(metricsMs, () => this.pollMetrics())
  }

  /** Stops polling after one last look at everything. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.polling.catch(() => {})
    await this.pollBackends().catch(() => {})
    if (this.metrics.length > 0) await this.pollMetrics().catch(() => {})
  }

  ejections(): Omit<Ejection, 'atMessage' | 'ownMessages'>[] {
    return mergeEjections([...this.seen.values()])
  }

  private async get(node: WatchedNode, pathname: string): Promise<Response> {
    return fetch(`${node.adminUrl}${pathname}`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(5_000),
    })
  }

  async pollBackends(): Promise<void> {
    const views = await Promise.all(
      this.nodes.map(async (n) => {
        const body = (await (await this.get(n, '/api/backends')).json()) as { backends: BackendView[] }
        return { node: n.label, backends: body.backends }
      }),
    )
    for (const { node, backends } of views) {
      const out: string[] = []
      for (const b of backends) {
        const k = `${node} ${b.id}`
        if (OUT.has(b.state)) out.push(`${b.id} ${b.state}`)
        if (b.state === 'ejected' && !this.seen.has(`${k} ${b.since}`)) {
          const before = this.lastState.get(k) ?? null
          this.seen.set(`${k} ${b.since}`, {
            node,
            backend: b.id,
            since: b.since,
            until: b.until,
            reason: b.reason,
            // A failed probe re-ejects straight from 'probing'; the poll may not have seen that state.
            stateBefore: before === 'ejected' ? 'probing' : before,
          })
        }
        this.lastState.set(k, b.state)
      }
      if (out.length > this.maxOut) {
        this.maxOut = out.length
        this.maxOutWhich = `${node}: ${out.join(', ')}`
      }
    }
  }

  async pollMetrics(): Promise<void> {
    const texts = await Promise.all(
      this.nodes.map(async (n) => parseMetrics(await (await this.get(n, '/metrics')).text())),
    )
    for (const m of this.metrics) {
      const values = texts.map((s) => sumSeries(s, m.name, m.labels))
      if (values.every((v) => v === null)) continue
      const sum = values.reduce<number>((a, v) => a + (v ?? 0), 0)
      this.metricPeaks[m.key] = Math.max(this.metricPeaks[m.key] ?? Number.NEGATIVE_INFINITY, sum)
    }
  }

  /** The spool entries on each node now (held ones included). */
  async spoolCounts(): Promise<number[]> {
    return Promise.all(
      this.nodes.map(async (n) => {
        const body = (await (await this.get(n, '/api/spool')).json()) as { messages: unknown[] }
        return body.messages.length
      }),
    )
  }
}
