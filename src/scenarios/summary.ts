// Folds one row's runs (one per seed) into what the table shows: medians, how many seeds passed, what failed.
// Pure, so the numbers the table prints come from tested code.
import { falseEjections, firstEjection } from './checks'
import type { CheckResult, RunRecord, Scenario } from './types'

export interface RowSummary {
  name: string
  title: string
  mustShow: string
  status: 'ran' | 'not-runnable' | 'error'
  /** Why a row did not run (config refused, or the error that stopped it). */
  why?: string
  seeds: number[]
  /** Seeds whose run passed every check. */
  passed: number
  /** Median messages sent. */
  messages: number | null
  /** Median messages until the row's target was ejected; null when it has no target or it was never ejected. */
  untilEjection: number | null
  /** 'own': counted in the target's own messages (the weighted row). */
  unit: 'pooled' | 'own'
  /** Seeds in which the target was never ejected. */
  notEjected: number
  /** The backend whose ejection the row is about, if any. */
  target: string | null
  falseEjections: number | null
  bounced: number | null
  lost: number | null
  duplicates: number | null
  /** Failed checks, "seed N: detail", and run notes. */
  failures: string[]
  notes: string[]
}

/** Median of the numbers (lower middle for an even count, so it is always a value that occurred). */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? null
}

/** The backend a row's ejection column follows: the one its first ejection check names, else its first culprit. */
export function targetOf(s: Scenario): { backend: string; unit: 'pooled' | 'own' } | null {
  for (const c of s.checks) {
    if (c.kind === 'ejectedWithin') return { backend: c.backend, unit: c.count }
    if (c.kind === 'ejectedInProbation' || c.kind === 'ejectionsGrow') return { backend: c.backend, unit: 'pooled' }
  }
  const culprit = s.backends.find((b) => b.culprit)
  return culprit ? { backend: culprit.id, unit: 'pooled' } : null
}

export function notRun(s: Scenario, status: 'not-runnable' | 'error', why: string, seeds: number[]): RowSummary {
  return {
    name: s.name,
    title: s.title,
    mustShow: s.mustShow,
    status,
    why,
    seeds,
    passed: 0,
    messages: null,
    untilEjection: null,
    unit: 'pooled',
    notEjected: 0,
    target: null,
    falseEjections: null,
    bounced: null,
    lost: null,
    duplicates: null,
    failures: [],
    notes: [],
  }
}

export function summarize(s: Scenario, runs: readonly { record: RunRecord; checks: CheckResult[] }[]): RowSummary {
  const target = targetOf(s)
  const m = (f: (r: RunRecord) => number) => median(runs.map((x) => f(x.record)))
  const until: number[] = []
  let notEjected = 0
  for (const { record } of runs) {
    if (!target) break
    const e = firstEjection(record, target.backend)
    if (e) until.push(target.unit === 'own' ? e.ownMessages : e.atMessage)
    else notEjected++
  }
  const failures: string[] = []
  const notes: string[] = []
  for (const { record, checks } of runs) {
    for (const c of checks) if (!c.pass) failures.push(`seed ${record.seed}: ${c.detail}`)
    for (const n of record.notes) notes.push(`seed ${record.seed}: ${n}`)
  }
  return {
    name: s.name,
    title: s.title,
    mustShow: s.mustShow,
    status: 'ran',
    seeds: runs.map((x) => x.record.seed),
    passed: runs.filter((x) => x.checks.every((c) => c.pass)).length,
    messages: m((r) => r.ledger.sent),
    // Only when most seeds ejected it: a median over the seeds that did would flatter the row.
    untilEjection: notEjected * 2 < runs.length ? median(until) : null,
    unit: target?.unit ?? 'pooled',
    notEjected,
    target: target?.backend ?? null,
    falseEjections: m((r) => falseEjections(s, r).length),
    bounced: m((r) => r.ledger.bounced),
    lost: m((r) => r.ledger.lost),
    duplicates: m((r) => r.ledger.duplicates),
    failures,
    notes,
  }
}
