// With Redis every node publishes the config version it runs, so `mxgate status` on any node shows a reload on one
// node that the others did not get (two real mxgate processes, one real redis-server).
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { ReloadView } from '../src/admin/types'
import { runMxgate } from './helpers/mxgate-process'
import { startRedis } from './helpers/redis-server'
import { api, backend, eventually, startNode, tempDir } from './helpers/spool-e2e'

t.test('mxgate status shows each node and its config version; a node that reloaded alone is marked', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const mx1 = await backend(t, { id: 'mx1' })
  const ini = `[backend.mx1]\naddress = 127.0.0.1:${mx1.port}\n`
  const env = { MXGATE_REDIS_URL: redis.url, MXGATE_REDIS_PREFIX: `test-${randomUUID()}:` }
  const dirs = [tempDir(t, 'mxgate-reload-a-'), tempDir(t, 'mxgate-reload-b-')]
  for (const d of dirs) writeFileSync(path.join(d, 'mxgate.ini'), ini)
  const [a, b] = [
    await startNode(t, { backends: [], config: dirs[0]!, spoolDir: tempDir(t, 'mxgate-reload-sa-'), env }),
    await startNode(t, { backends: [], config: dirs[1]!, spoolDir: tempDir(t, 'mxgate-reload-sb-'), env }),
  ]
  const status = (node: typeof a) =>
    runMxgate(['status', '--admin', node.adminUrl, '--token-file', node.tokenFile], { MXGATE_ADMIN_TOKEN: '' })
  t.ok(
    await eventually(async () => /nodes \(config version each runs\)/.test((await status(b)).stdout), 15_000),
    'node b sees both nodes',
  )
  t.notMatch((await status(b)).stdout, /differs/, 'both run the same settings')

  writeFileSync(path.join(dirs[0]!, 'mxgate.ini'), `${ini}weight = 3\n`)
  const r = await api<ReloadView>(a, 'POST', '/api/reload', {})
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.same(r.body.reweighted, [{ id: 'mx1', from: 100, to: 3 }])
  let out = ''
  t.ok(
    await eventually(async () => {
      out = (await status(b)).stdout
      return out.includes(`config ${r.body.configVersion}`) && /differs from this node/.test(out)
    }, 15_000),
    'node b shows node a with its new version, marked as different',
  )
  t.match(out, new RegExp(`config ${r.body.configVersion} .*differs`))
})
