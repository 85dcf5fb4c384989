// Rows of the result: summaries over repetitions, ratios to the Postfix and direct rows, the printed table.
import { sizeLabel } from './args'
import type { RunSample } from './measure'
import { ratio, type Spread, spread } from './stats'

export interface RowSummary {
  msgsPerSec: Spread
  p50Ms: Spread
  p99Ms: Spread
  cpuMsPerMsg: Spread
  peakMemBytes: Spread
  genCpuMsPerMsg: Spread
  firstAfterMs: Spread
}

export interface RowReport {
  id: string
  label: string
  sizeBytes: number
  available: boolean
  /** Why the row was not measured (available = false), or what went wrong in some runs. */
  reason?: string
  runs: RunSample[]
  summary: RowSummary
  /** Median msgs/s over the Postfix row's median msgs/s for the same size (NaN when either is missing). */
  vsPostfix: number
  vsDirect: number
}

export function summarize(runs: readonly RunSample[]): RowSummary {
  const of = (pick: (r: RunSample) => number | undefined): Spread => spread(runs.map((r) => pick(r) ?? Number.NaN))
  return {
    msgsPerSec: of((r) => r.msgsPerSec),
    p50Ms: of((r) => r.p50Ms),
    p99Ms: of((r) => r.p99Ms),
    cpuMsPerMsg: of((r) => r.cpuMsPerMsg),
    peakMemBytes: of((r) => r.peakMemBytes),
    genCpuMsPerMsg: of((r) => r.genCpuMsPerMsg),
    firstAfterMs: of((r) => r.firstAfterMs),
  }
}

/** Fills vsPostfix and vsDirect from the rows with id 'postfix' and 'direct' of the same size. */
export function addRatios(rows: RowReport[]): void {
  const median = (id: string, size: number): number =>
    rows.find((r) => r.id === id && r.sizeBytes === size && r.available)?.summary.msgsPerSec.median ?? Number.NaN
  for (const row of rows) {
    row.vsPostfix = ratio(row.summary.msgsPerSec.median, median('postfix', row.sizeBytes))
    row.vsDirect = ratio(row.summary.msgsPerSec.median, median('direct', row.sizeBytes))
  }
}

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function num(x: number, digits: number): string {
  if (Number.isNaN(x)) return '—'
  return digits === 0 ? int.format(x) : x.toFixed(digits)
}

/** "1,234 (1,100–1,300)": the median and, over several reps, the min–max spread. */
export function formatSpread(s: Spread, digits: number, scale = 1): string {
  if (s.n === 0) return '—'
  const m = num(s.median / scale, digits)
  if (s.n === 1 || s.min === s.max) return m
  return `${m} (${num(s.min / scale, digits)}–${num(s.max / scale, digits)})`
}

function formatRatio(x: number): string {
  return Number.isNaN(x) ? '—' : `${x.toFixed(2)}×`
}

const HEADER = [
  'path',
  'size',
  'msgs/s (min–max)',
  'p50 ms',
  'p99 ms',
  'relay CPU ms/msg',
  'peak mem MB (PSS)',
  '× Postfix',
  '× direct',
  'notes',
]

function notes(row: RowReport): string {
  const parts: string[] = []
  if (!row.available) parts.push(`not available: ${row.reason ?? 'unknown'}`)
  else {
    const first = row.summary.firstAfterMs
    if (first.n > 0) parts.push(`first message ${formatSpread(first, 0)} ms after the backend returned`)
    if (row.reason !== undefined) parts.push(row.reason)
  }
  const text = parts.join('; ')
  return text.length > 100 ? `${text.slice(0, 99)}…` : text
}

/** The cells of one table line; an unavailable row has empty measurements and says why in its notes. */
export function tableCells(row: RowReport): string[] {
  const size = sizeLabel(row.sizeBytes)
  if (!row.available) return [row.label, size, '', '', '', '', '', '', '', notes(row)]
  const s = row.summary
  return [
    row.label,
    size,
    formatSpread(s.msgsPerSec, 0),
    formatSpread(s.p50Ms, 1),
    formatSpread(s.p99Ms, 1),
    formatSpread(s.cpuMsPerMsg, 2),
    formatSpread(s.peakMemBytes, 0, 1024 * 1024),
    formatRatio(row.vsPostfix),
    formatRatio(row.vsDirect),
    notes(row),
  ]
}

/** A Markdown pipe table with padded columns: readable in a terminal and pasteable into an issue. */
export function formatTable(rows: readonly RowReport[]): string {
  const cells = [HEADER, ...rows.map(tableCells)]
  const widths = HEADER.map((_, i) => Math.max(...cells.map((c) => (c[i] ?? '').length)))
  const line = (c: string[]): string => `| ${c.map((x, i) => x.padEnd(widths[i] ?? 0)).join(' | ')} |`
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`
  return [line(HEADER), rule, ...rows.map((r) => line(tableCells(r)))].join('\n')
}
