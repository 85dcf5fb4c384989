// Restore acts on every node, including the node whose own breaker ejected the backend (issue 8, "Blame" item 2):
// two health registries on one shared store, the ejection made by A's breaker, the restore made on B.
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import t, { type Test } from 'tap'
import { type IpcChannel, type IpcMessage, IpcStore } from '../src/cluster/ipc-store'
import { MemoryStore } from '../src/cluster/memory-store'
import { RedisStore } from '../src/cluster/redis-store'
import type { AutoEjection, ManualOverride, StateStore } from '../src/cluster/types'
import { DEFAULTS } from '../src/config/schema'
import { HealthRegistry } from '../src/health/registry'
import { eventually, startRedis } from './helpers/redis-server'

const quiet = pino({ level: 'silent' })

function registryOn(t: Test, store: StateStore): HealthRegistry {
  const health = new HealthRegistry(
    [{ id: 'mx1', host: '127.0.0.1', port: 1, weight: 100 }],
    // A long ejection: A's own timer and probe cannot be what re-admits mx1 within the test.
    { ...DEFAULTS.breaker, ejectionMs: 120_000, maxEjectionMs: 600_000, slowStartMs: 60_000 },
    { probe: async () => null, store, log: quiet },
  )
  t.teardown(() => health.close())
  return health
}

const failing = async () => ({
  backendId: 'mx1',
  ok: false,
  accepted: [],
  refused: [],
  dotReply: null,
  failure: null,
  elapsedMs: 0,
  reusedSession: false,
})

async function ejectByBreaker(health: HealthRegistry): Promise<void> {
  for (let i = 0; i < 6 && health.status('mx1').state !== 'ejected'; i++) {
    await health.track('mx1', failing, () => 'connect: ECONNREFUSED')
  }
}

async function restoreOnOtherNode(t: Test, a: HealthRegistry, b: HealthRegistry, storeA: StateStore): Promise<void> {
  await ejectByBreaker(a)
  t.equal(a.status('mx1').state, 'ejected', 'A’s own breaker ejected mx1')
  t.match(storeA.ejections().get('mx1'), { node: storeA.node })
  await eventually(() => b.status('mx1').state === 'ejected', 'B follows A’s ejection')

  await b.restore('mx1', 'ops@B')
  t.equal(b.status('mx1').state, 'probation', 'restored on B')
  await eventually(() => a.status('mx1').state === 'probation', 'A follows the restore made on B', 3000)
  t.equal(a.admission('mx1').allowed, true, 'A sends mail to mx1 again')
  t.equal(storeA.ejections().has('mx1'), false)
}

t.test('a restore on another node re-admits a backend this node’s own breaker ejected: Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = `test-${randomUUID()}:`
  const storeA = new RedisStore({ url: redis.url, prefix, node: 'A', logger: quiet })
  const storeB = new RedisStore({ url: redis.url, prefix, node: 'B', logger: quiet })
  t.teardown(() => Promise.all([storeA.stop(), storeB.stop()]))
  await Promise.all([storeA.start(), storeB.start()])
  const a = registryOn(t, storeA)
  const b = registryOn(t, storeB)
  await restoreOnOtherNode(t, a, b, storeA)
})

/** The master side of the IPC store in one process: what ipc-hub.ts does, without node:cluster. */
function ipcPair(): [IpcStore, IpcStore] {
  const hub = new MemoryStore({ node: 'master' })
  void hub.start()
  const workers: ((m: unknown) => void)[] = []
  const channel = (): IpcChannel => {
    let listener: ((m: unknown) => void) | null = null
    return {
      send: (m: IpcMessage) => {
        if (m.op !== 'put') return
        const put =
          m.kind === 'override'
            ? hub.setOverride(m.id, m.value as ManualOverride | null)
            : hub.setEjection(m.id, m.value as AutoEjection | null)
        // Like the master: apply, then broadcast to every worker (the sender included), asynchronously.
        void put.then(() =>
          setImmediate(() => {
            for (const w of workers) w(m)
          }),
        )
      },
      on: (_e, fn) => {
        listener = fn
        workers.push((m) => listener?.(m))
      },
      off: () => {
        listener = null
      },
    }
  }
  return [new IpcStore(channel(), 'worker-1'), new IpcStore(channel(), 'worker-2')]
}

t.test('a restore on another worker re-admits a backend this worker’s own breaker ejected: IPC', async (t) => {
  const [storeA, storeB] = ipcPair()
  t.teardown(() => Promise.all([storeA.stop(), storeB.stop()]))
  await Promise.all([storeA.start(), storeB.start()])
  const a = registryOn(t, storeA)
  const b = registryOn(t, storeB)
  await restoreOnOtherNode(t, a, b, storeA)
})

t.test('an ejection that simply ends is not mistaken for a restore', async (t) => {
  const store = new MemoryStore({ node: 'A' })
  await store.start()
  t.teardown(() => store.stop())
  const states: string[] = []
  const health = new HealthRegistry(
    [{ id: 'mx1', host: '127.0.0.1', port: 1, weight: 100 }],
    { ...DEFAULTS.breaker, ejectionMs: 300, maxEjectionMs: 300, slowStartMs: 60_000 },
    // The probe fails: re-admission must not happen behind its back when the first ejection's time is up.
    {
      probe: async () => ({ stage: 'connect', kind: 'refused', reply: null, message: 'refused', elapsedMs: 0 }),
      store,
      log: quiet,
    },
  )
  t.teardown(() => health.close())
  health.on('state', (s: { state: string }) => states.push(s.state))
  await ejectByBreaker(health)
  await eventually(() => states.filter((s) => s === 'ejected').length >= 2, 'the failed probe ejects again', 3000)
  t.notOk(states.includes('probation'), `never re-admitted (states: ${states.join(' → ')})`)
})

t.test(
  'a node that re-admitted a backend itself does not follow an older ejection of it by another node',
  async (t) => {
    const [storeA, storeB] = ipcPair()
    t.teardown(() => Promise.all([storeA.stop(), storeB.stop()]))
    await Promise.all([storeA.start(), storeB.start()])
    const states: string[] = []
    const a = new HealthRegistry(
      [{ id: 'mx1', host: '127.0.0.1', port: 1, weight: 100 }],
      { ...DEFAULTS.breaker, ejectionMs: 300, maxEjectionMs: 300, slowStartMs: 60_000 },
      { probe: async () => null, store: storeA, log: quiet },
    )
    t.teardown(() => a.close())
    a.on('state', (s: { state: string }) => states.push(s.state))
    await ejectByBreaker(a)
    t.equal(a.status('mx1').state, 'ejected', 'A’s own breaker ejected mx1')
    // B ejected the same episode a little later, for longer (its own count), and its entry won the shared slot.
    const now = Date.now()
    await storeB.setEjection('mx1', { reason: 'B: 5 of 5 failed', at: now, until: now + 60_000, count: 3, node: 'B' })
    await eventually(() => a.status('mx1').state === 'trial', 'A probes mx1 when its own ejection ends', 3000)
    const ok = async () => ({ ...(await failing()), ok: true })
    await a.track('mx1', ok, () => null)
    t.equal(a.status('mx1').state, 'probation', 'A’s trial message passed: A re-admits mx1')
    // A looks again at every change of the shared state: B's older entry is written again, and A's registry has judged it
    // by the time a listener registered after the registry's hears of it.
    const before = states.length
    const seen = new Promise<void>((resolve) => storeA.once('change', () => resolve()))
    await storeB.setEjection('mx1', {
      reason: 'B: 5 of 5 failed (again)',
      at: now,
      until: now + 60_000,
      count: 3,
      node: 'B',
    })
    await seen
    t.same(states.slice(before), [], `A did not eject again for what was left of B’s older ejection`)
    t.equal(a.status('mx1').state, 'probation')

    // An ejection B decides after A's re-admission is news: A follows it.
    const later = Date.now()
    await storeB.setEjection('mx1', {
      reason: 'B: 6 of 6 failed',
      at: later,
      until: later + 60_000,
      count: 4,
      node: 'B',
    })
    await eventually(() => a.status('mx1').state === 'ejected', 'A follows B’s newer ejection', 3000)
    t.match(a.status('mx1').reason, /ejected by B: B: 6 of 6 failed/)
  },
)
