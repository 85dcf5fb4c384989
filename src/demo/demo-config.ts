// The few settings the demo changes over config/mxgate.ini, and the mxgate.ini it writes for `--config DIR`.
// Shown to the audience before the run: a demo that quietly tuned the breaker would prove nothing.
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
 * Shorter ejections and slow start, so that within a minute mx3 is ejected, probed, tried, re-ejected while still
 * broken, and after the fix re-admitted through probation. Detection itself (threshold, window, minimum volume)
 * stays as shipped.
 */
export const DEMO_BREAKER: readonly { key: string; value: string; ms: number; field: keyof Breaker; why: string }[] = [
  { key: 'breaker.ejection_time', value: '2s', ms: 2000, field: 'ejectionMs', why: 'first ejection' },
  { key: 'breaker.max_ejection_time', value: '4s', ms: 4000, field: 'maxEjectionMs', why: 'repeats double up to this' },
  { key: 'breaker.slow_start', value: '5s', ms: 5000, field: 'slowStartMs', why: 'probation before full share' },
]

type Breaker = MxgateConfig['breaker']

/** 30000 → "30s", 600000 → "10m", 250 → "250ms". */
export function formatMs(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** What the demo changes, against the breaker settings mxgate would otherwise use. */
export function demoSettingChanges(base: Breaker): SettingChange[] {
  return DEMO_BREAKER.map((s) => ({ key: s.key, from: formatMs(base[s.field]), to: s.value, why: s.why }))
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
