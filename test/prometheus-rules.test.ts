// The alert rules as Prometheus reads them: `promtool check rules` (syntax, templates) and `promtool test rules`
// (deploy/prometheus/alerts.test.yml: each alert fires on what should fire it, after its `for`, and not on near
// misses). promtool comes from Debian's prometheus package; .ci/run installs it.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'
import { ROOT } from './helpers/mxgate-process'
import { findTool, skipWithout } from './helpers/tools'

const DIR = path.join(ROOT, 'deploy', 'prometheus')
const promtool = findTool(['promtool'])
const skip = skipWithout(t, promtool, 'promtool', 'apt-get install -y --no-install-recommends prometheus')

function run(args: string[]) {
  const r = spawnSync(promtool!, args, { cwd: DIR, encoding: 'utf8', timeout: 60_000 })
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
