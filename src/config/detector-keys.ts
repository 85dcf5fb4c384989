// The settings of the outlier detector, probation and permanent-refusal confirmation: [detector] keys, and the
// few [breaker] and [relay] keys that belong to them. load.ts merges these into its table and calls checkDetector.
import type { MxgateConfig } from './schema'
import { parseDuration } from './units'

type Setter = (cfg: MxgateConfig, raw: string) => true | { error: string }

/** "12.5%" → 0.125, "0.125" → 0.125; null when it is neither. */
export function parseShare(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(raw.trim())
  if (!m) return null
  const n = Number(m[1]) / (m[2] === '%' ? 100 : 1)
  return Number.isFinite(n) ? n : null
}

function share(set: (c: MxgateConfig, v: number) => void, min: number, max: number, example: string): Setter {
  return (c, raw) => {
    const v = parseShare(raw)
    if (v === null || v < min || v > max)
      return { error: `"${raw}" must be a share from ${min * 100}% to ${max * 100}%, e.g. ${example}` }
    set(c, v)
    return true
  }
}

function num(set: (c: MxgateConfig, v: number) => void, min: number, max: number, what: string): Setter {
  return (c, raw) => {
    const v = Number(raw)
    if (raw.trim() === '' || !Number.isFinite(v) || v < min || v > max)
      return { error: `"${raw}" must be a number from ${min} to ${max} (${what})` }
    set(c, v)
    return true
  }
}

function whole(set: (c: MxgateConfig, v: number) => void, min: number, max: number): Setter {
  return (c, raw) => {
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max)
      return { error: `"${raw}" must be a whole number from ${min} to ${max}` }
    set(c, Number(raw))
    return true
  }
}

function ms(set: (c: MxgateConfig, v: number) => void, min: number): Setter {
  return (c, raw) => {
    const v = parseDuration(raw)
    if (v === null) return { error: `"${raw}" is not a duration; write e.g. 500ms, 30s, 5m, 2h` }
    if (v < min) return { error: `"${raw}" is too short; use at least ${min}ms` }
    set(c, v)
    return true
  }
}

function flag(set: (c: MxgateConfig, v: boolean) => void): Setter {
  return (c, raw) => {
    const v = raw.toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(v)) set(c, true)
    else if (['false', 'no', 'off', '0'].includes(v)) set(c, false)
    else return { error: `"${raw}" must be true or false` }
    return true
  }
}

const CLASSES = ['5.1', '5.2', '5.6', 'X.3.4'] as const

/** "5.1, 5.6" → ['5.1', '5.6']; "none" or "" → []. */
export function parseConfirmClasses(raw: string): MxgateConfig['relay']['confirmPermanent'] | { error: string } {
  const items = raw
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
  if (items.length === 1 && items[0]!.toLowerCase() === 'none') return []
  const out: MxgateConfig['relay']['confirmPermanent'] = []
  for (const item of items) {
    const norm = item.toUpperCase() === 'X.3.4' || item === '5.3.4' ? 'X.3.4' : item
    const cls = CLASSES.find((c) => c === norm)
    if (cls === undefined)
      return { error: `"${item}" is not a class that can be confirmed; use some of 5.1, 5.2, 5.6, X.3.4, or none` }
    if (!out.includes(cls)) out.push(cls)
  }
  return out
}

export const DETECTOR_KEYS: Record<string, Setter> = {
  'relay.confirm_permanent': (c, raw) => {
    const v = parseConfirmClasses(raw)
    if (!Array.isArray(v)) return v
    c.relay.confirmPermanent = v
    return true
  },
  'breaker.probation_share': share((c, v) => (c.breaker.probationShare = v), 0.01, 1, '10%'),
  'breaker.probation_messages': whole((c, v) => (c.breaker.probationMessages = v), 0, 1_000_000),
  'breaker.probe_timeout': ms((c, v) => (c.breaker.probeTimeoutMs = v), 100),
  'detector.mode': (c, raw) => {
    if (raw !== 'enforce' && raw !== 'observe') return { error: `"${raw}" must be enforce or observe` }
    c.detector.mode = raw
    return true
  },
  'detector.threshold': num((c, v) => (c.detector.threshold = v), 1, 100, 'the CUSUM threshold h; default 16'),
  'detector.probation_threshold': num(
    (c, v) => (c.detector.probationThreshold = v),
    1,
    100,
    'h in probation; default 8',
  ),
  'detector.warning': share((c, v) => (c.detector.warningShare = v), 0.05, 1, '50%'),
  'detector.ratio': num((c, v) => (c.detector.ratio = v), 1.1, 100, 'p1 = max(ratio × p0, p0 + margin); default 3'),
  'detector.margin': share((c, v) => (c.detector.margin = v), 0.001, 0.5, '2.5%'),
  'detector.floor': share((c, v) => (c.detector.floor = v), 0.0001, 0.2, '0.1%'),
  'detector.min_faults': whole((c, v) => (c.detector.minFaults = v), 1, 100_000),
  'detector.min_reference': whole((c, v) => (c.detector.minReference = v), 1, 10_000_000),
  'detector.budget': share((c, v) => (c.detector.budgetShare = v), 0, 1, '33%'),
  'detector.degraded_rate': share((c, v) => (c.detector.degradedRate = v), 0.001, 1, '5%'),
  'detector.refusal_signal': flag((c, v) => (c.detector.refusalSignal = v)),
  'detector.bucket': ms((c, v) => (c.detector.bucketMs = v), 100),
  'detector.retention': ms((c, v) => (c.detector.retentionMs = v), 1000),
}

/** Whole-config rules; returns the key and problem, or null. */
export function checkDetector(cfg: MxgateConfig): { key: string; problem: string } | null {
  const d = cfg.detector
  if (d.retentionMs < d.bucketMs * 3)
    return { key: 'detector.retention', problem: 'must be at least three buckets (detector.bucket × 3); raise it' }
  if (d.probationThreshold > d.threshold)
    return { key: 'detector.probation_threshold', problem: `must not exceed detector.threshold (${d.threshold})` }
  return null
}
