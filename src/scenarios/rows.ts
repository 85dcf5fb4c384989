// The scenario suite's rows (issue 9, "Scenario suite"), as data: backends and their faults, weights, node config
// overrides, load, operator actions and what each row must show. run.ts runs one; table.ts prints them.
//
// Rows that need the outlier detector carry `[detector]` in their ini. A build without the detector refuses that
// section ("unknown section [detector]"), and the runner reports the row as not runnable rather than running it
// on the breaker alone. Tune them here when the detector lands: its keys (from the detector branch, in progress)
// are detector.mode, threshold, probation_threshold, budget, degraded_rate, min_faults, bucket, retention, and
// breaker.probation_share, probation_messages, probe_timeout. The metric names and log texts the checks look for
// are those of the detector branch as of its commit 6ce49c7 (README "Metrics" there).
import type { FaultRule } from '../testing/fault-rules'
import type { BackendSpec, Check, Scenario } from './types'

const noise = (p: number): FaultRule => ({
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Temporary failure',
  probability: p,
})
const eod451 = (p: number): FaultRule => ({
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Internal configuration error',
  probability: p,
})

const pool = (n: number, extra: Partial<BackendSpec> = {}): BackendSpec[] =>
  Array.from({ length: n }, (_, i) => ({ id: `mx${i + 1}`, ...extra }))

/** The shipped detector in enforce mode: the section's presence is what marks a row as needing the detector. */
const DETECTOR = '[detector]\nmode = enforce\n'

/**
 * The detector judges once per outcome bucket (shipped: 10 s) on counts the store pools every ~2 s, so "messages
 * until ejection" holds up to (bucket + pooling lag) × rate messages of waiting on top of the statistics. Detector
 * rows therefore send at a fixed RATE, a plausible MX rate, instead of as fast as two nodes take them (~500/s here,
 * which would add ~6,000 messages of pure waiting). Quick mode shortens the bucket instead, as issue 9 allows
 * ("make the windows configuration, so tests can shorten them without weakening the maths").
 */
const RATE = 100
const QUICK_DETECTOR = '[detector]\nbucket = 1s\nretention = 1m\n'

const SAFE: Check[] = [
  { kind: 'lost', max: 0 },
  { kind: 'bounced', max: 0 },
]

// The detector's names (detector branch, src/detector-metrics.ts and registry.ts): gauges are sampled every second,
// so a flag that was up at any sample counts.
const METRIC_WOULD_EJECT = 'mxgate_detector_would_eject_total'
const METRIC_DEGRADED = 'mxgate_detector_pool_degraded'
const METRIC_FROZEN = 'mxgate_detector_budget_frozen'
const METRIC_EJECTIONS = 'mxgate_backend_ejections_total'
/** A detector ejection's reason starts with its cause ("ejected by NODE: " first on a node that followed). */
const DETECTOR_REASON = '(^|: )(detector|probation):'

export const SCENARIOS: Scenario[] = [
  {
    name: 'sanity-breaker',
    title: '4 backends; one answers `451 4.3.0` to 60% at end of data (extra row: the breaker alone)',
    mustShow: 'ejected within 500 messages; no other ejected; 0 lost; 0 bounced',
    backends: [...pool(3), { id: 'mx4', faults: [eod451(0.6)], culprit: true }],
    ini: '',
    load: { messages: 1500, timeLimitMs: 120_000, concurrency: 12 },
    quick: { load: { messages: 600 } },
    checks: [
      { kind: 'ejectedWithin', backend: 'mx4', messages: 500, count: 'pooled' },
      { kind: 'noFalseEjections' },
      ...SAFE,
    ],
  },
  {
    name: 'eod-451',
    title: '4 backends all failing a random 0.5% with `451`; one also answers `451 4.3.0` to 3% at end of data',
    mustShow: 'that one ejected within 3,000 messages; no other ejected; 0 lost; 0 bounced',
    backends: [
      ...pool(3, { faults: [noise(0.005)] }),
      { id: 'mx4', faults: [eod451(0.03), noise(0.005)], culprit: true },
    ],
    ini: DETECTOR,
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3200 } },
    checks: [
      { kind: 'ejectedWithin', backend: 'mx4', messages: 3000, count: 'pooled' },
      { kind: 'noFalseEjections' },
      ...SAFE,
    ],
  },
  {
    name: 'rcpt-511',
    title: '4 backends; one answers `550 5.1.1` to 3% of valid recipients at RCPT (broken lookup)',
    mustShow: 'ejected within 3,000 messages; 0 of those 550s reach a sender or a DSN; 0 lost',
    backends: [
      ...pool(3),
      {
        id: 'mx4',
        // Every recipient the load sends is a real user (userN@example.com): each of these 550s is the backend's.
        faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.1.1 User unknown', probability: 0.03, rcpt: 'user' }],
        culprit: true,
      },
    ],
    ini: DETECTOR,
    // Every fourth message has two recipients: a refusal of one is then a DSN, not a 5xx to the sender.
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE, recipients: [1, 1, 1, 2] },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3200 } },
    checks: [{ kind: 'ejectedWithin', backend: 'mx4', messages: 3000, count: 'pooled' }, ...SAFE],
  },
  {
    name: 'rcpt-571',
    title: '4 backends; one answers `550 5.7.1` to 3% at RCPT (wrong relay rules)',
    mustShow: 'ejected within 3,000; 0 bounced; 0 lost',
    backends: [
      ...pool(3),
      {
        id: 'mx4',
        faults: [{ stage: 'rcpt', action: 'reply', reply: '550 5.7.1 Relaying denied', probability: 0.03 }],
        culprit: true,
      },
    ],
    ini: DETECTOR,
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE, recipients: [1, 1, 1, 2] },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3200 } },
    checks: [{ kind: 'ejectedWithin', backend: 'mx4', messages: 3000, count: 'pooled' }, ...SAFE],
  },
  {
    name: 'quiet-pool',
    title: '4 backends, all at a random 0.5% `451`',
    mustShow: '0 ejections in 50,000 messages (quick: 5,000)',
    backends: pool(4, { faults: [noise(0.005)] }),
    ini: DETECTOR,
    load: { messages: 50_000, timeLimitMs: 900_000, concurrency: 16 },
    quick: { ini: QUICK_DETECTOR, load: { messages: 5000 } },
    checks: [{ kind: 'maxEjections', max: 0 }, ...SAFE],
  },
  {
    name: 'two-backends',
    title: '2 backends; one fails 5%',
    mustShow: 'ejected within 3,000 messages',
    backends: [{ id: 'mx1' }, { id: 'mx2', faults: [eod451(0.05)], culprit: true }],
    ini: DETECTOR,
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3200 } },
    checks: [
      { kind: 'ejectedWithin', backend: 'mx2', messages: 3000, count: 'pooled' },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'weighted',
    title: '5 backends with weights 100/100/100/50/10; the weight-10 one fails 5%',
    mustShow: 'ejected within 1,500 of its own messages',
    backends: [
      { id: 'mx1', weight: 100 },
      { id: 'mx2', weight: 100 },
      { id: 'mx3', weight: 100 },
      { id: 'mx4', weight: 50 },
      { id: 'mx5', weight: 10, faults: [eod451(0.05)], culprit: true },
    ],
    ini: DETECTOR,
    // Its share is 10/360 (2.8%): 1,500 of its own messages take about 54,000 in all.
    load: { messages: 60_000, timeLimitMs: 1_200_000, concurrency: 16 },
    quick: { ini: QUICK_DETECTOR, load: { messages: 30_000 } },
    checks: [
      { kind: 'ejectedWithin', backend: 'mx5', messages: 1500, count: 'own' },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'probation',
    title: 'a backend starting in probation fails 10%',
    mustShow: 'ejected while still in probation, having carried at most 2% of the mail sent meanwhile',
    backends: [...pool(4), { id: 'mx5', faults: [eod451(0.1)], culprit: true }],
    ini: DETECTOR,
    // mx5 joins the way an operator adds one: out from the start, restored after 500 messages (a restored backend
    // starts in probation, issue 9 "Probation and probes").
    actions: [
      { atMessage: 0, op: 'eject', backend: 'mx5' },
      { atMessage: 500, op: 'restore', backend: 'mx5' },
    ],
    // At probation_share 5% mx5 gets about 1.2% of the mail: some 80 of its own messages in 7,000.
    load: { messages: 7500, timeLimitMs: 300_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR },
    checks: [
      { kind: 'ejectedInProbation', backend: 'mx5', maxShare: 0.02 },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'flapping',
    title: 'a backend fails for 30 s, recovers for 30 s, repeatedly',
    mustShow: 'ejection times grow; at most 5 ejections in 5 minutes (quick: 3 s / 3 s in 30 s, config scaled too)',
    backends: [...pool(3), { id: 'mx4', faults: [eod451(1)], flap: { failMs: 30_000, okMs: 30_000 }, culprit: true }],
    // A hard failure, so the breaker (ejection time doubling per repeat) is what this row measures today.
    ini: '',
    load: { messages: 12_000, timeLimitMs: 300_000, concurrency: 12, rate: 40 },
    quick: {
      timeScale: 0.1,
      load: { messages: 1200, timeLimitMs: 30_000 },
      ini: [
        '[breaker]',
        'window = 2s',
        'window_buckets = 4',
        'ejection_time = 3s',
        'max_ejection_time = 1m',
        'repeat_reset = 90s',
        'slow_start = 3s',
        '',
      ].join('\n'),
    },
    checks: [
      { kind: 'ejectionsGrow', backend: 'mx4' },
      { kind: 'maxEjections', max: 5 },
      { kind: 'noFalseEjections' },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'all-degraded',
    title: 'all 4 backends fail 20%',
    mustShow: 'no detector ejection; pool flagged degraded; nothing lost',
    backends: pool(4, { faults: [eod451(0.2)] }),
    ini: DETECTOR,
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3000 } },
    checks: [
      { kind: 'maxEjections', max: 0, reason: DETECTOR_REASON },
      {
        kind: 'metric',
        what: 'no detector ejection counted',
        name: METRIC_EJECTIONS,
        labels: { reason: 'detector' },
        max: 0,
      },
      { kind: 'metric', what: 'pool flagged degraded', name: METRIC_DEGRADED, min: 1 },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'two-failers',
    title: '4 backends; two fail 3%',
    mustShow: 'at most the budget ejected; the freeze flagged; nothing lost',
    backends: [
      ...pool(2),
      { id: 'mx3', faults: [eod451(0.03)], culprit: true },
      { id: 'mx4', faults: [eod451(0.03)], culprit: true },
    ],
    ini: DETECTOR,
    load: { messages: 6000, timeLimitMs: 400_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR, load: { messages: 4500 } },
    checks: [
      // The default budget: the larger of 1 and a third of 4 backends.
      { kind: 'maxEjectedAtOnce', max: 1 },
      { kind: 'metric', what: 'budget freeze flagged', name: METRIC_FROZEN, min: 1 },
      { kind: 'lost', max: 0 },
    ],
  },
  {
    name: 'observe',
    title: '`observe` mode, one failing 3%',
    mustShow: '"would eject" logged and exported; nothing ejected',
    backends: [...pool(3), { id: 'mx4', faults: [eod451(0.03)] }],
    ini: '[detector]\nmode = observe\n',
    load: { messages: 4000, timeLimitMs: 300_000, concurrency: 12, rate: RATE },
    quick: { ini: QUICK_DETECTOR, load: { messages: 3200 } },
    checks: [
      { kind: 'log', what: '"would eject" logged', match: 'would eject', min: 1 },
      { kind: 'metric', what: '"would eject" exported', name: METRIC_WOULD_EJECT, min: 1 },
      { kind: 'maxEjections', max: 0 },
      { kind: 'lost', max: 0 },
    ],
  },
]
