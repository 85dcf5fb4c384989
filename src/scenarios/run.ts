// Runs one scenario once: fake backends (seeded faults, flapping on a timer) and a fake smarthost for DSNs, one
// throwaway redis-server, two real `mxgate start` nodes sharing it, the bounded load spread over both, operator
// actions on schedule; then waits (bounded) for both spools to empty and records what happened. Everything it
// starts is stopped, and every temp dir removed, whatever happens. It judges nothing: checks.ts does.
import { setTimeout as sleep } from 'node:timers/promises'
import { FakeBackend } from '../testing/fake-backend'
import { type MxgateCluster, startCluster } from '../testing/mxgate-cluster'
import { ROOT } from '../testing/mxgate-process'
import { type RedisProcess, startRedis } from '../testing/redis-server'
import { metricKey } from './checks'
import { ScenarioRunError } from './errors'
import { reckon, type SentMessage } from './ledger'
import { runLoad, startedBy } from './load'
import { nodeIni, refusal } from './node-config'
import type { Action, Ejection, LoadSpec, RunRecord, Scenario } from './types'
import { Watcher } from './watch'

export interface RunOptions {
  quick: boolean
  seed: number
  /** The built checkout the nodes run from (default: this one). */
  root?: string
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void
  signal?: AbortSignal
}

export type RunOutcome = { status: 'ran'; record: RunRecord } | { status: 'not-runnable'; why: string }

const TOKEN = 'scenario-suite'
const POLL_MS = 100
const METRICS_MS = 1000

/** The load a row runs with in this mode. */
export function effectiveLoad(s: Scenario, quick: boolean): LoadSpec {
  return { ...s.load, ...(quick ? s.quick?.load : undefined) }
}

/** Toggles a backend's faults on a schedule (on first), until stopped. */
function flapper(
  backend: FakeBackend,
  faults: NonNullable<Scenario['backends'][number]['faults']>,
  failMs: number,
  okMs: number,
) {
  let on = true
  let timer: NodeJS.Timeout | null = null
  let stopped = false
  const flip = () => {
    if (stopped) return
    on = !on
    backend.setFaults(on ? faults : []).catch(() => {})
    timer = setTimeout(flip, on ? failMs : okMs)
  }
  timer = setTimeout(flip, failMs)
  return () => {
    stopped = true
    if (timer) clearTimeout(timer)
  }
}

export async function runScenario(s: Scenario, opts: RunOptions): Promise<RunOutcome> {
  const log = opts.log ?? (() => {})
  const load = effectiveLoad(s, opts.quick)
  const scale = opts.quick ? (s.quick?.timeScale ?? 1) : 1
  const backends = s.backends.map(
    (b, i) => new FakeBackend({ id: b.id, faults: b.faults ?? [], seed: opts.seed * 1000 + i + 1 }),
  )
  const smarthost = new FakeBackend({ id: 'smarthost' })
  let redis: RedisProcess | null = null
  let cluster: MxgateCluster | null = null
  const stopFlaps: (() => void)[] = []
  try {
    for (const b of [...backends, smarthost]) await b.start()
    const weights = Object.fromEntries(s.backends.flatMap((b) => (b.weight === undefined ? [] : [[b.id, b.weight]])))
    const list = s.backends
      .map((b, i) => `${b.id}=127.0.0.1:${backends[i]?.port}${b.weight === undefined ? '' : `*${b.weight}`}`)
      .join(',')
    const ini = nodeIni({
      rowIni: s.ini,
      ...(opts.quick && s.quick?.ini !== undefined ? { quickIni: s.quick.ini } : {}),
      bounceRelayPort: smarthost.port,
    })
    const root = opts.root ?? ROOT
    const why = refusal(ini, root, list)
    if (why !== null) return { status: 'not-runnable', why: `this build refuses the row's config: ${why}` }

    redis = await startRedis()
    cluster = await startCluster({
      redisUrl: redis.url,
      backends,
      weights,
      token: TOKEN,
      ini,
      labels: ['A', 'B'],
      root,
    })
    const nodes = cluster.nodes
    log(`${s.name} seed ${opts.seed}: redis ${redis.url}, nodes ${nodes.map((n) => n.proc.port).join(' and ')}`)

    const transactions = new Map<string, number[]>(backends.map((b) => [b.id, []]))
    for (const b of backends) b.on('transaction', (e) => transactions.get(b.id)?.push(e.at))

    const metricChecks = s.checks.flatMap((c) => (c.kind === 'metric' ? [c] : []))
    const watcher = new Watcher(
      nodes.map((n) => ({ label: n.label, adminUrl: n.adminUrl })),
      TOKEN,
      metricChecks.map((c) => ({ key: metricKey(c), name: c.name, ...(c.labels ? { labels: c.labels } : {}) })),
    )
    watcher.start(POLL_MS, METRICS_MS)

    const done: (Action & { at: number })[] = []
    const act = async (a: Action) => {
      const body = a.op === 'eject' ? { reason: `scenario ${s.name}: joins later` } : {}
      const res = await fetch(`${nodes[0]?.adminUrl}/api/backends/${a.backend}/${a.op}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      })
      if (!res.ok) {
        throw new ScenarioRunError(
          `POST /api/backends/${a.backend}/${a.op} on node A answered ${res.status}: ${await res.text()} (check the row's actions)`,
        )
      }
      done.push({ ...a, at: Date.now() })
    }
    const actions = s.actions ?? []
    for (const a of actions.filter((x) => x.atMessage === 0)) await act(a)
    // Let the nodes see the operator's state through the store before mail flows.
    if (actions.some((x) => x.atMessage === 0)) await sleep(500)

    for (const [i, spec] of s.backends.entries()) {
      if (spec.flap && spec.faults) {
        stopFlaps.push(flapper(backends[i]!, spec.faults, spec.flap.failMs * scale, spec.flap.okMs * scale))
      }
    }
    const began = Date.now()
    const due = new Map(actions.filter((x) => x.atMessage > 0).map((a) => [a.atMessage, a]))
    const sent = await runLoad(
      `${s.name}-${opts.seed}-${began}`,
      load,
      nodes.map((n) => ({ port: n.proc.port })),
      {
        before: async (i) => {
          const a = due.get(i)
          if (a) await act(a)
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
    )
    const loadMs = Date.now() - began
    for (const stop of stopFlaps) stop()
    const sentCount = sent.startTimes.length
    log(
      `${s.name} seed ${opts.seed}: ${sentCount} messages in ${Math.round(loadMs / 100) / 10}s; waiting for the spools`,
    )

    // Spooled mail (and the DSNs recorded in the spool) must leave before "lost" means anything.
    const spoolWaitMs = opts.quick ? 45_000 : 120_000
    const until = Date.now() + spoolWaitMs
    // -1: the spools could not be read (a node down): "lost" then rests on the backends' copies alone.
    let spoolLeft = -1
    for (let i = 0; i < 10_000 && Date.now() < until; i++) {
      spoolLeft = (await watcher.spoolCounts().catch(() => [-1])).reduce((a, n) => (a < 0 || n < 0 ? -1 : a + n), 0)
      if (spoolLeft === 0) break
      await sleep(250)
    }
    await watcher.stop()

    const ejections: Ejection[] = watcher.ejections().map((e) => ({
      ...e,
      atMessage: startedBy(sent.startTimes, e.since),
      ownMessages: startedBy(transactions.get(e.backend) ?? [], e.since),
    }))
    const probation: RunRecord['probation'] = {}
    for (const a of done.filter((x) => x.op === 'restore')) {
      const end = ejections.find((e) => e.backend === a.backend && e.since >= a.at)?.since ?? began + loadMs
      const own = transactions.get(a.backend) ?? []
      probation[a.backend] = {
        own: startedBy(own, end) - startedBy(own, a.at),
        all: startedBy(sent.startTimes, end) - startedBy(sent.startTimes, a.at),
      }
    }
    const logMatches: Record<string, number> = {}
    for (const c of s.checks) {
      if (c.kind !== 'log') continue
      const re = new RegExp(c.match, 'i')
      logMatches[c.match] = nodes
        .flatMap((n) => n.proc.logs)
        .filter((l) => typeof l.msg === 'string' && re.test(l.msg)).length
    }
    const messages: SentMessage[] = []
    sent.results.forEach((r, i) => {
      if (!r) return
      messages.push({
        messageId: sent.messageId(i),
        to: sent.recipients(i),
        ok: r.ok,
        code: r.code,
        ...(r.error === undefined ? {} : { error: r.error }),
        rcptReplies: r.rcptReplies,
      })
    })
    const notes: string[] = []
    if (sentCount < load.messages) notes.push(`time limit: ${sentCount} of ${load.messages} messages sent`)
    if (spoolLeft > 0) notes.push(`${spoolLeft} messages still spooled after ${spoolWaitMs / 1000}s (counted as lost)`)
    if (spoolLeft < 0) notes.push('the spools could not be read at the end (GET /api/spool failed)')
    if (watcher.errors > 0) notes.push(`${watcher.errors} admin polls failed`)
    const record: RunRecord = {
      scenario: s.name,
      seed: opts.seed,
      quick: opts.quick,
      planned: load.messages,
      startedAt: began,
      durationMs: loadMs,
      ejections,
      maxOut: watcher.maxOut,
      maxOutWhich: watcher.maxOutWhich,
      actions: done,
      ledger: reckon(
        messages,
        backends.map((b) => b.received),
        smarthost.received,
      ),
      spoolLeft,
      metrics: watcher.metricPeaks,
      logMatches,
      probation,
      notes,
    }
    return { status: 'ran', record }
  } finally {
    for (const stop of stopFlaps) stop()
    await cluster?.stop()
    await redis?.stop()
    await Promise.all([...backends, smarthost].map((b) => b.stop()))
  }
}
