// The few settings the demo changes over config/mxgate.ini, and the mxgate.ini it writes for `--config DIR`.
// Shown to the audience before the run: a demo that quietly tuned the breaker or the detector would prove nothing.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import type { MxgateConfig } from '../config/schema'

export interface SettingChange {
  /** "section.key" as in mxgate.ini. */
  key: string
  from: string
  to: string
  why: string
}

/**
 * Only clocks change, never how much evidence anything needs. The breaker's ejections and slow start are shorter,
 * so that within a minute mx3 is ejected, probed, tried and re-admitted through probation; the breaker's detection
 * (threshold, window, minimum volume) stays as shipped. The detector's bucket and window shrink by the same factor
 * (10), so it runs a round every second over a one-minute window of 60 buckets, as shipped over ten minutes: its
 * test (threshold, ratio, margin, minimum faults, minimum reference) is untouched, it needs the same number of
 * messages as in production, it just gets them sooner.
 *
 * The first ejection is long enough for the breaker to catch mx4 while the detector's budget (one backend of four)
 * is spent on mx3: see incident.ts.
 */
export const DEMO_SETTINGS: readonly DemoSetting[] = [
  { key: 'breaker.ejection_time', value: '10s', read: (c) => c.breaker.ejectionMs, why: 'first ejection' },
  { key: 'breaker.max_ejection_time', value: '20s', read: (c) => c.breaker.maxEjectionMs, why: 'repeats double' },
  { key: 'breaker.slow_start', value: '5s', read: (c) => c.breaker.slowStartMs, why: 'ramp after probation' },
  { key: 'detector.bucket', value: '1s', read: (c) => c.detector.bucketMs, why: 'a detector round each' },
  { key: 'detector.retention', value: '1m', read: (c) => c.detector.retentionMs, why: 'its window: 60 buckets' },
]

export interface DemoSetting {
  /** "section.key" as in mxgate.ini. */
  key: string
  /** The demo's value, as written to mxgate.ini. */
  value: string
  /** The value mxgate would otherwise use, in ms. */
  read: (c: MxgateConfig) => number
  why: string
}

/** 30000 → "30s", 600000 → "10m", 250 → "250ms". */
export function formatMs(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** What the demo changes, against the settings mxgate would otherwise use. */
export function demoSettingChanges(base: MxgateConfig): SettingChange[] {
  return DEMO_SETTINGS.map((s) => ({ key: s.key, from: formatMs(s.read(base)), to: s.value, why: s.why }))
}

/** The mxgate.ini text for these changes. */
export function demoIni(changes: readonly SettingChange[]): string {
  const bySection = new Map<string, string[]>()
  for (const c of changes) {
    const [section, name] = c.key.split('.') as [string, string]
    const lines = bySection.get(section) ?? []
    lines.push(`${name} = ${c.to}`)
    bySection.set(section, lines)
  }
  const parts = ['; written by `mxgate demo`; layered over config/mxgate.ini']
  for (const [section, lines] of bySection) parts.push(`[${section}]`, ...lines)
  return `${parts.join('\n')}\n`
}

/** Writes DIR/mxgate.ini for `mxgate start --config DIR`. */
export function writeDemoConfig(dir: string, changes: readonly SettingChange[]): string {
  const file = path.join(dir, 'mxgate.ini')
  writeFileSync(file, demoIni(changes))
  return file
}

/** What the demo leaves as shipped, said out loud: the evidence each ejection needs. */
export function unchangedSettings(c: MxgateConfig, backends: number): string[] {
  const b = c.breaker
  const d = c.detector
  const budget = Math.max(1, Math.floor(backends * d.budgetShare))
  return [
    `unchanged: the breaker ejects at ${b.errorThresholdPercent}% backend faults within ${b.windowMs / 1000}s` +
      ` (at least ${b.minVolume} attempts);`,
    `  the detector at CUSUM ≥ ${d.threshold} with at least ${d.minFaults} faults against the rest of the pool's` +
      ` rate (${d.probationThreshold} and ${Math.ceil(d.minFaults / 2)} in probation), at most ${budget} of` +
      ` ${backends} backends out by it;`,
    `  probation: ${b.probationMessages} good messages at ${Math.round(b.probationShare * 100)}% of the weight;` +
      ' everything else as shipped',
  ]
}
