// The probes while a node comes up: the admin API answers before the spool is recovered (liveness 200, readiness
// 503 "recovering"), then readiness waits for the SMTP listener; a shutdown fails it at once.
import pino from 'pino'
import t from 'tap'
import { parseTokens } from '../src/admin/auth'
import { startAdminServer } from '../src/admin/server'
import { Engine } from '../src/engine'
import { NodeAdmin } from '../src/node-admin'
import { startBackends, testConfig } from './helpers/engine'

const TOKEN = 'readiness-test-token'

t.test('recovering, then waiting for the listener, then ready, then shutting down', async (t) => {
  const backends = await startBackends([{}])
  const cfg = testConfig(backends)
  const engine = new Engine(cfg)
  const admin = new NodeAdmin(engine)
  const server = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    tokens: parseTokens(TOKEN),
    port: admin,
    log: pino({ level: 'silent' }),
  })
  t.teardown(async () => {
    await server.close()
    await engine.close()
    await Promise.all(backends.map((b) => b.stop()))
  })
  const url = `http://127.0.0.1:${server.address.port}`
  const get = async (p: string) => {
    const res = await fetch(`${url}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    return { status: res.status, text: await res.text() }
  }

  t.same(await get('/healthz'), { status: 200, text: 'ok\n' }, 'alive while recovering')
  const recovering = await get('/readyz')
  t.equal(recovering.status, 503)
  t.same(JSON.parse(recovering.text).reasons, [
    'recovering: the spool is being read back',
    'SMTP listener not bound yet',
  ])
  const spool = await get('/api/spool')
  t.equal(spool.status, 503, 'spool reads wait for recovery')
  t.same(JSON.parse(spool.text), { error: 'the spool is still being recovered; try again in a moment' })

  await engine.start()
  t.same(JSON.parse((await get('/readyz')).text).reasons, ['SMTP listener not bound yet'])
  admin.smtpListening = true
  t.same(await get('/readyz'), {
    status: 200,
    text: `${JSON.stringify({ node: engine.node, ready: true, reasons: [] })}\n`,
  })
  t.equal((await get('/api/spool')).status, 200)

  admin.shuttingDown = true
  const leaving = await get('/readyz')
  t.equal(leaving.status, 503)
  t.same(JSON.parse(leaving.text).reasons, ['shutting down'])
  t.equal((await get('/healthz')).status, 200, 'still alive while draining')
})
