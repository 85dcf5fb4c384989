// The dashboard and the alert rules name only metrics mxgate exports: every name in their PromQL is in the /metrics
// output of a running node (with Redis, so mxgate_redis_up is there), or in INTENDED below. And the dashboard
// imports as-is: its one datasource is the ${DS_PROMETHEUS} input, its panels have unique ids and do not overlap.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { ROOT, startMxgate } from './helpers/mxgate-process'
import { startRedis } from './helpers/redis-server'

/**
 * INTENDED: names the dashboard and alerts use before mxgate exports them. Once one is exported, the last test here
 * fails naming it: delete its line (and the INTENDED comment in alerts.yml) then.
 */
const INTENDED: Record<string, string> = {}

const DASHBOARD = path.join(ROOT, 'deploy', 'grafana', 'mxgate.json')
const ALERTS = path.join(ROOT, 'deploy', 'prometheus', 'alerts.yml')

/** Every `expr` string anywhere in a JSON value. */
function exprsOf(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) exprsOf(v, out)
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'expr' && typeof v === 'string') out.push(v)
      else exprsOf(v, out)
    }
  }
  return out
}

/** The alert rules' expressions: every rule's `expr:` is one line. */
function alertExprs(text: string): string[] {
  return [...text.matchAll(/^\s*expr:\s*(.+)$/gm)].map((m) => m[1]!.trim())
}

/** Metric names in PromQL: ours all start with mxgate_ or process_; label values in quotes are skipped. */
function metricNames(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  return [...unquoted.matchAll(/\b(?:mxgate|process)_[A-Za-z0-9_]+\b/g)].map((m) => m[0])
}

/** Families from `# TYPE` lines (so a counter without samples yet counts), with histogram sample names. */
function exported(text: string): Set<string> {
  const names = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m
    names.add(name!)
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`)
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${name}${s}`)
  }
  return names
}

const intendedBase = (name: string) => name.replace(/_(bucket|sum|count)$/, '')

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  __inputs: { name: string; type: string; pluginId: string }[]
  panels: { id: number; title: string; datasource: unknown; gridPos: { x: number; y: number; w: number; h: number } }[]
  templating: { list: { datasource?: unknown }[] }
}
const used = new Map<string, string>()
for (const e of [...exprsOf(dashboard), ...alertExprs(readFileSync(ALERTS, 'utf8'))])
  for (const n of metricNames(e)) used.set(n, e)

t.test('the dashboard imports as-is: one datasource input, unique panel ids, no overlapping panels', async (t) => {
  t.same(
    dashboard.__inputs.map((i) => [i.name, i.type, i.pluginId]),
    [['DS_PROMETHEUS', 'datasource', 'prometheus']],
  )
  const datasources = new Set<string>()
  const walk = (v: unknown, key = ''): void => {
    if (Array.isArray(v)) for (const x of v) walk(x)
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k)
    else if (key === 'uid' && typeof v === 'string') datasources.add(v)
  }
  walk([dashboard.panels, dashboard.templating])
  // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's import placeholder, literally
  t.same([...datasources], ['${DS_PROMETHEUS}'], 'every query names the input, never a local datasource uid')
  const ids = dashboard.panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const cells = new Map<string, string>()
  const overlaps: string[] = []
  for (const p of dashboard.panels) {
    t.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the 24-column grid`)
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        const other = cells.get(`${x},${y}`)
        if (other !== undefined) overlaps.push(`${p.title} / ${other} at ${x},${y}`)
        cells.set(`${x},${y}`, p.title)
      }
  }
  t.same(overlaps, [], 'no two panels share a cell')
})

t.test('every metric the dashboard and the alerts use is on /metrics of a running node, or INTENDED', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const node = await startMxgate({
    backends: `mx1=127.0.0.1:${mx1.port}`,
    env: { MXGATE_REDIS_URL: redis.url, MXGATE_ADMIN_TOKEN: 'metrics-test-token' },
  })
  t.teardown(() => node.stop())
  // One message, so the labelled counters and histograms have children too.
  const sent = await sendMessage({
    host: '127.0.0.1',
    port: node.port,
    from: 'a@remote.test',
    to: ['b@example.com'],
    message: makeTestMessage(),
  })
  t.equal(sent.ok, true)
  const text = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text()
  const have = exported(text)
  t.ok(have.has('mxgate_redis_up'), 'the node runs with Redis')

  for (const [name, expr] of [...used].sort()) {
    if (have.has(name)) t.pass(`${name} is exported`)
    else if (INTENDED[intendedBase(name)] !== undefined) t.comment(`INTENDED ${name}: ${INTENDED[intendedBase(name)]}`)
    else t.fail(`${name} is not exported by mxgate (used in: ${expr})`)
  }
  for (const name of Object.keys(INTENDED)) {
    t.ok(
      [...used.keys()].some((n) => intendedBase(n) === name),
      `${name} is still used by the dashboard or the alerts (else drop it from INTENDED)`,
    )
    t.notOk(
      have.has(name),
      `${name} is not exported yet (once it is, remove it from INTENDED and its INTENDED comment in alerts.yml)`,
    )
  }
})
