// The reload plan: which differences apply live, which need a restart, and what happens to the pool.
import t from 'tap'
import { configVersion, needsRestart, planIsEmpty, planReload } from '../src/config/reload-plan'
import { DEFAULTS, type MxgateConfig } from '../src/config/schema'

function cfg(over: (c: MxgateConfig) => void = () => undefined): MxgateConfig {
  const c: MxgateConfig = { files: ['/etc/mxgate/mxgate.ini'], ...structuredClone(DEFAULTS) }
  c.backends = [
    { id: 'mx1', host: '10.0.0.1', port: 25, weight: 1 },
    { id: 'mx2', host: '10.0.0.2', port: 25, weight: 1 },
  ]
  over(c)
  return c
}

const FROM_FILE = { poolFromEnv: false, file: '/etc/mxgate/mxgate.ini' }

t.test('the same settings make an empty plan and the same version', async (t) => {
  const p = planReload(cfg(), cfg(), FROM_FILE)
  t.ok(planIsEmpty(p))
  const own = cfg((c) => {
    c.files = ['elsewhere.ini']
    c.smtp.listen = { host: '10.0.0.7', port: 25 }
    c.admin.listen = { host: '10.0.0.7', port: 8025 }
    c.spool.dir = '/srv/spool-b'
  })
  t.equal(configVersion(cfg()), configVersion(own), "a node's own files, addresses and spool do not count")
})

t.test('backends added, removed and re-weighted', async (t) => {
  const next = cfg((c) => {
    c.backends = [
      { id: 'mx2', host: '10.0.0.2', port: 25, weight: 3 },
      { id: 'mx3', host: '10.0.0.3', port: 25, weight: 1 },
    ]
  })
  const p = planReload(cfg(), next, FROM_FILE)
  t.same(
    p.added.map((b) => b.id),
    ['mx3'],
  )
  t.same(p.removed, ['mx1'])
  t.same(p.reweighted, [{ id: 'mx2', from: 1, to: 3 }])
  t.not(configVersion(cfg()), configVersion(next))
})

t.test('a changed address is not applied in place: the note says to use a new id or restart', async (t) => {
  const p = planReload(
    cfg(),
    cfg((c) => (c.backends[0]!.host = '10.9.9.9')),
    FROM_FILE,
  )
  t.same(p.added, [])
  t.same(p.removed, [])
  t.match(p.notes[0], /mx1 changed its address .*new id/)
})

t.test('a pool from MXGATE_BACKENDS stays; the note points at the file', async (t) => {
  const p = planReload(
    cfg(),
    cfg((c) => c.backends.pop()),
    { poolFromEnv: true, file: '/etc/mxgate/mxgate.ini' },
  )
  t.same(p.removed, [])
  t.match(p.notes[0], /MXGATE_BACKENDS.*\[backend\.ID\] sections in \/etc\/mxgate\/mxgate\.ini/)
})

t.test('live settings and restart-only settings are sorted apart', async (t) => {
  const next = cfg((c) => {
    c.smtp.domains = ['example.org']
    c.breaker.errorThresholdPercent = 30
    c.detector.threshold = 20
    c.spool.maxMessages = 5
    c.smtp.listen = { host: '0.0.0.0', port: 25 }
    c.spool.dir = '/var/spool/other'
    c.client.maxSessions = 3
    c.redis.url = 'redis://10.0.0.9:6379'
  })
  const p = planReload(cfg(), next, FROM_FILE)
  t.same(p.live.map((c) => c.key).sort(), [
    'breaker.errorThresholdPercent',
    'detector.threshold',
    'smtp.domains',
    'spool.maxMessages',
  ])
  t.same(p.restart.map((c) => c.key).sort(), ['client.maxSessions', 'redis.url', 'smtp.listen', 'spool.dir'])
  t.same(
    p.restart.find((c) => c.key === 'smtp.listen'),
    {
      key: 'smtp.listen',
      from: { host: '127.0.0.1', port: 2525 },
      to: { host: '0.0.0.0', port: 25 },
    },
  )
})

t.test('needsRestart knows whole sections and single keys', async (t) => {
  t.ok(needsRestart('admin.token'))
  t.ok(needsRestart('smtp.workers'))
  t.notOk(needsRestart('smtp.maxRecipients'))
  t.notOk(needsRestart('tls.cert'))
})

t.test('the version masks secrets: it can be shown and shared', async (t) => {
  const a = cfg((c) => (c.redis.url = 'redis://:secret1@10.0.0.1:6379'))
  const b = cfg((c) => (c.redis.url = 'redis://:secret2@10.0.0.1:6379'))
  t.match(configVersion(a), /^[0-9a-f]{12}$/)
  t.equal(configVersion(a), configVersion(b), 'a rotated password alone does not make nodes look different')
})
