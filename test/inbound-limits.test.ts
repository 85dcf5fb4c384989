// Inbound limits as arithmetic: connection slots, the message memory budget, and when DATA is out of time.
import t from 'tap'
import { ConnectionGate, dataOverdue, MemoryBudget } from '../src/inbound/limits'

t.test('the connection gate counts per address and in all, and frees slots on close', async (t) => {
  const g = new ConnectionGate({ maxConnections: 3, maxConnectionsPerIp: 2 })
  t.equal(g.open('10.0.0.1'), null)
  t.equal(g.open('10.0.0.1'), null)
  t.equal(g.open('10.0.0.1'), 'per-ip')
  t.equal(g.open('10.0.0.2'), null)
  t.equal(g.open('10.0.0.3'), 'total')
  t.same(g.counts, { total: 3, ips: 2 })
  g.close('10.0.0.1')
  t.equal(g.open('10.0.0.3'), null, 'a freed slot is taken by anyone')
  g.close('10.0.0.9')
  t.same(g.counts, { total: 3, ips: 3 }, 'closing an address that holds nothing changes nothing')
})

t.test('the memory budget takes only what fits and never goes below zero', async (t) => {
  const b = new MemoryBudget(100)
  t.ok(b.reserve(60))
  t.notOk(b.reserve(41))
  t.ok(b.reserve(40))
  t.equal(b.inUse, 100)
  b.release(70)
  t.equal(b.inUse, 30)
  b.release(1000)
  t.equal(b.inUse, 0)
})

t.test('DATA is overdue past its deadline, or below the rate floor after the grace period', async (t) => {
  const limits = { dataTimeoutMs: 60_000, minDataRate: 500, dataRateGraceMs: 10_000 }
  t.equal(dataOverdue(0, 0, 9_999, limits), null, 'no floor during the grace period')
  t.equal(dataOverdue(0, 5_001, 10_001, limits), null, 'just over 500 bytes/s')
  t.equal(dataOverdue(0, 4_000, 10_001, limits), 'rate')
  t.equal(dataOverdue(0, 10_000_000, 60_000, limits), 'deadline', 'fast but too long')
  t.equal(dataOverdue(0, 0, 59_000, { ...limits, minDataRate: 0 }), null, 'rate floor 0 is off')
})
