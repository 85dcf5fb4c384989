// The detector's metrics: what it sees (fault ratios, its statistic), what it did or would do (ejections by cause,
// would-eject, budget freeze, degraded pool) and how long it took (first fault → ejection).
import { Counter, Histogram } from 'prom-client'
import type { Engine } from './engine'
import type { EjectionEvidence } from './health/registry'

export function registerDetectorMetrics(engine: Engine): void {
  const m = engine.metrics
  const registers = [m.registry]
  const loop = engine.detector
  const ejections = new Counter({
    name: 'mxgate_backend_ejections_total',
    help: 'Ejections on this node by cause: breaker (hard failures), detector (outlier), probation (outlier while in probation), canary (canaries lost after 250), operator; other nodes’ ejections followed here are counted by their cause too',
    labelNames: ['backend', 'reason'],
    registers,
  })
  const wouldEject = new Counter({
    name: 'mxgate_detector_would_eject_total',
    help: 'Detector alarms not acted on, by why: observe (mode), budget (frozen), degraded (pool)',
    labelNames: ['backend', 'why'],
    registers,
  })
  const delay = new Histogram({
    name: 'mxgate_detector_ejection_delay_seconds',
    help: 'From the first fault behind the detector’s statistic to the ejection',
    buckets: [5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers,
  })
  engine.health.on('ejection', (ev: { id: string; cause: string; evidence: EjectionEvidence | null }) => {
    ejections.labels(ev.id, ev.cause).inc()
    if (ev.evidence?.firstFaultAt != null) delay.observe(Math.max(0, (Date.now() - ev.evidence.firstFaultAt) / 1000))
  })
  loop.on('wouldEject', (e, why) => wouldEject.labels(e.id, why).inc())

  const evaluation = (id: string, signal: 'fault' | 'refusal') =>
    loop.lastRound?.evaluations.find((e) => e.id === id && e.signal === signal)
  m.gauge(
    'mxgate_detector_statistic',
    'The detector’s CUSUM statistic per backend and signal (fault, refusal); it ejects at the threshold',
    ['backend', 'signal'],
    (set) => {
      for (const id of engine.health.ids())
        for (const signal of ['fault', 'refusal'] as const)
          set({ backend: id, signal }, loop.detector.statistic(id, signal))
    },
  )
  m.gauge('mxgate_detector_threshold', 'The threshold h in normal rotation and in probation', ['phase'], (set) => {
    set({ phase: 'admitted' }, engine.config.detector.threshold)
    set({ phase: 'probation' }, engine.config.detector.probationThreshold)
  })
  m.gauge(
    'mxgate_backend_fault_ratio',
    'Each backend’s backend-fault share over the detector window, pooled over nodes',
    ['backend'],
    (set) => {
      for (const id of engine.health.ids()) {
        const c = engine.store.pooledOutcomes(id, engine.config.detector.retentionMs)
        set({ backend: id }, c.ok + c.fail > 0 ? c.fail / (c.ok + c.fail) : 0)
      }
    },
  )
  m.gauge(
    'mxgate_backend_refusal_ratio',
    'Each backend’s share of attempts with a permanent message-looking refusal (5.1/5.2/5.6/X.3.4), pooled',
    ['backend'],
    (set) => {
      for (const id of engine.health.ids()) {
        const c = engine.store.pooledOutcomes(id, engine.config.detector.retentionMs)
        set({ backend: id }, c.ok + c.fail > 0 ? c.refused / (c.ok + c.fail) : 0)
      }
    },
  )
  m.gauge('mxgate_pool_fault_ratio', 'The whole pool’s backend-fault share over the detector window', [], (set) => {
    set({}, loop.lastRound?.poolRate ?? 0)
  })
  m.gauge(
    'mxgate_detector_rest_of_pool_ratio',
    'Per backend, the rest of the pool’s fault share it is compared with (absent with too little traffic)',
    ['backend'],
    (set) => {
      for (const id of engine.health.ids()) {
        const e = evaluation(id, 'fault')
        if (e?.poolRate != null) set({ backend: id }, e.poolRate)
      }
    },
  )
  m.gauge(
    'mxgate_detector_would_eject',
    '1 while the detector would eject the backend but does not (observe mode, budget frozen, pool degraded)',
    ['backend'],
    (set) => {
      for (const id of engine.health.ids()) set({ backend: id }, loop.wouldEjectNow(id) ? 1 : 0)
    },
  )
  m.gauge('mxgate_detector_budget_frozen', '1 while the ejection budget holds back a detector ejection', [], (set) => {
    set({}, loop.lastRound?.frozen ? 1 : 0)
  })
  m.gauge(
    'mxgate_detector_pool_degraded',
    '1 while most backends fail together (no outlier; nobody ejected)',
    [],
    (set) => {
      set({}, loop.lastRound?.degraded ? 1 : 0)
    },
  )
  m.gauge('mxgate_detector_observe', '1 when the detector runs in observe mode (computes, never ejects)', [], (set) => {
    set({}, engine.config.detector.mode === 'observe' ? 1 : 0)
  })
}
