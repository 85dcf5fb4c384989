// Engine.reconfigure with the parts main added since the reload work: the canary scheduler and its metrics follow
// the pool (an added backend gets series, a removed one's go), as the verifier does through the shared pool.
import t from 'tap'
import { planReload } from '../src/config/reload-plan'
import { FakeBackend } from '../src/testing/fake-backend'
import { startRig } from './helpers/engine'
import { eventually } from './helpers/spool-e2e'

t.test('a reload adds and retires backends for the canaries and their metrics too', async (t) => {
  const r = await startRig([{}, {}], {
    tweak: (c) => {
      c.canary.address = 'canary@example.com'
    },
  })
  t.teardown(() => r.close())
  const b3 = new FakeBackend({ id: 'b3' })
  await b3.start()
  t.teardown(() => b3.stop())
  const canaries = r.engine.canaries
  if (canaries === null) throw new Error('canaries are off in this rig')
  t.ok(await eventually(() => canaries.view('b2').sent > 0, 10_000), 'b2 took a canary before the reload')
  const next = structuredClone(r.config)
  next.backends = [next.backends[0]!, { ...next.backends[0]!, id: 'b3', port: b3.port }]
  const plan = planReload(r.config, next, { poolFromEnv: false, file: 'mxgate.ini' })
  t.same({ added: plan.added.map((b) => b.id), removed: plan.removed }, { added: ['b3'], removed: ['b2'] })
  await r.engine.reconfigure(next, plan)
  const text = await r.engine.metrics.registry.metrics()
  t.match(text, /mxgate_canary_pending\{backend="b3"\}/, 'the added backend has canary series')
  t.notMatch(text, /backend="b2"/, 'the removed backend left no series, canary ones included')
  t.same(canaries.view('b2').sent, 0, 'its canary counts went with it')
  t.same(r.engine.health.ids().sort(), ['b1', 'b3'])
})
