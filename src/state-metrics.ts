// Gauges that mirror a node's live state at scrape time: backend states, in-flight, spool, Redis.
import type { Engine } from './engine'

const STATES = ['admitted', 'probation', 'trial', 'probing', 'ejected', 'manual-ejected', 'draining'] as const

export function registerStateMetrics(engine: Engine): void {
  const m = engine.metrics
  m.gauge(
    'mxgate_backend_state',
    'Current state of each backend (1 for the state it is in)',
    ['backend', 'state'],
    (set) => {
      for (const s of engine.health.statuses()) {
        const current = s.manual ? (s.manual.state === 'ejected' ? 'manual-ejected' : 'draining') : s.state
        for (const state of STATES) set({ backend: s.id, state }, state === current ? 1 : 0)
      }
    },
  )
  // Not "mxgate_backend_ejections": that would clash with the mxgate_backend_ejections_total counter.
  m.gauge(
    'mxgate_backend_consecutive_ejections',
    'Consecutive automatic ejections of each backend (its next ejection time doubles with each; reset after repeat_reset)',
    ['backend'],
    (set) => {
      for (const s of engine.health.statuses()) set({ backend: s.id }, s.ejections)
    },
  )
  m.gauge('mxgate_backend_in_flight', 'Messages being delivered to each backend now', ['backend'], (set) => {
    for (const id of engine.health.ids()) set({ backend: id }, engine.pool.inFlightOf(id))
  })
  m.gauge('mxgate_spool_messages', 'Messages in the spool', [], (set) => {
    set({}, engine.spoolOpen ? engine.spool.stats().messages : 0)
  })
  m.gauge('mxgate_spool_bytes', 'Bytes of message bodies in the spool', [], (set) => {
    set({}, engine.spoolOpen ? engine.spool.stats().bytes : 0)
  })
  m.gauge('mxgate_spool_full', '1 when the spool refuses new messages (a limit is reached)', [], (set) => {
    set({}, engine.spoolOpen && engine.spool.stats().full ? 1 : 0)
  })
  m.gauge(
    'mxgate_spool_held_dsn',
    'Messages held only because their DSN could not be sent (no bounce_relay, or it refused); bounded by held_dsn_max',
    [],
    (set) => {
      set({}, engine.spoolOpen ? engine.spool.stats().heldDsn : 0)
    },
  )
  m.gauge(
    'mxgate_spool_unreadable_files',
    'Spooled messages whose file cannot be read now (EIO, EMFILE, EACCES): kept, retried, not delivered meanwhile',
    [],
    (set) => {
      set({}, engine.spoolOpen ? engine.spool.stats().unreadable : 0)
    },
  )
  m.counter('mxgate_spool_settled_total', 'Spooled messages settled, by how', ['how'], (set) => {
    const c = engine.runner.counters
    set({ how: 'delivered' }, c.delivered)
    set({ how: 'bounced' }, c.bounced)
    set({ how: 'expired' }, c.expired)
    set({ how: 'dsn_dropped' }, c.dsnDropped)
  })
  m.counter(
    'mxgate_spool_duplicates_total',
    'Deliveries this node knows it repeated or will repeat, by cause: taken_over (its claim on a message was taken over while it delivered: the new holder may deliver the same recipients), unsaved_at_stop (delivery progress still only in memory at stop: the next start delivers again to recipients that already have it)',
    ['cause'],
    (set) => {
      const c = engine.runner.counters
      set({ cause: 'taken_over' }, c.takenOver)
      set({ cause: 'unsaved_at_stop' }, c.unsavedAtStop)
    },
  )
  m.gauge(
    'mxgate_spool_oldest_message_age_seconds',
    'Age of the oldest message in the spool (since it was received; 0 when the spool is empty)',
    [],
    (set) => {
      let oldest = Number.POSITIVE_INFINITY
      if (engine.spoolOpen) for (const e of engine.spool.list()) oldest = Math.min(oldest, e.receivedAt)
      set({}, Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0)
    },
  )
  // A runner that stopped counting rounds is stuck; tests read them to know the runner looked at the spool.
  m.gauge('mxgate_spool_runner_rounds', 'Rounds of the spool runner over the messages due', [], (set) => {
    set({}, engine.runner.counters.rounds)
  })
  m.gauge(
    'mxgate_spool_runner_pickups',
    'Spooled messages the runner picked up to deliver, expire or bounce',
    [],
    (set) => {
      set({}, engine.runner.counters.pickups)
    },
  )
  m.gauge('mxgate_spool_runner_in_flight', 'Spooled messages picked up and not finished yet', [], (set) => {
    set({}, engine.runner.counters.running)
  })
  if (engine.config.redis.url !== null) {
    m.gauge(
      'mxgate_redis_up',
      '1 while the shared state store (Redis) is reachable; 0 = this node runs alone',
      [],
      (set) => {
        set({}, engine.store.up ? 1 : 0)
      },
    )
  }
}
