// The alert rules as Prometheus reads them: `promtool check rules` (syntax, templates) and `promtool test rules`
// (deploy/prometheus/alerts.test.yml: each alert fires on what should fire it, after its `for`, and not on near
// misses); and the Grafana dashboard's queries, parsed as PromQL. promtool comes from Debian's prometheus package;
// .ci/run installs it.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ROOT } from './helpers/mxgate-process'
import { findTool, skipWithout } from './helpers/tools'

const DIR = path.join(ROOT, 'deploy', 'prometheus')
const promtool = findTool(['promtool'])
const skip = skipWithout(t, promtool, 'promtool', 'apt-get install -y --no-install-recommends prometheus')

function run(args: string[], cwd = DIR) {
  const r = spawnSync(promtool!, args, { cwd, encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, out: `${r.stdout}${r.stderr}` }
}

t.test('promtool check rules accepts alerts.yml', { skip }, async (t) => {
  const r = run(['check', 'rules', 'alerts.yml'])
  t.equal(r.code, 0, r.out)
  t.match(r.out, /SUCCESS: \d+ rules found/)
})

t.test('promtool test rules passes the unit tests in alerts.test.yml', { skip }, async (t) => {
  const r = run(['test', 'rules', 'alerts.test.yml'])
  t.equal(r.code, 0, r.out)
  t.match(r.out, /SUCCESS/)
})

t.test('every query of the Grafana dashboard parses as PromQL', { skip }, async (t) => {
  const dashboard = readFileSync(path.join(ROOT, 'deploy', 'grafana', 'mxgate.json'), 'utf8')
  const exprs = [...dashboard.matchAll(/"expr": ("(?:[^"\\]|\\.)*")/g)].map((m) => JSON.parse(m[1]!) as string)
  t.ok(exprs.length >= 20, `${exprs.length} queries`)
  // Grafana's variables, as Grafana fills them in.
  const filled = exprs.map((e) =>
    e.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '1m').replaceAll('$instance', '.*'),
  )
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-dashboard-promql-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // One recording rule per query: promtool check rules parses each expression.
  const rules = filled
    .map((e, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(e)}`)
    .join('\n')
  writeFileSync(path.join(dir, 'queries.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules}\n`)
  const r = run(['check', 'rules', 'queries.yml'], dir)
  t.equal(r.code, 0, r.out)
  t.match(r.out, `SUCCESS: ${exprs.length} rules found`)
})
