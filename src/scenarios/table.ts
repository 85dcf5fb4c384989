// Prints the scenario table (a Markdown table, so it can be pasted into the README as it is) and, under it, what
// failed and why each row that did not run did not. Pure: rows in, lines out.
import type { RowSummary } from './summary'

const num = (n: number | null) => (n === null ? '—' : n.toLocaleString('en-US'))

function untilCell(r: RowSummary): string {
  if (r.status !== 'ran' || r.target === null) return '—'
  if (r.untilEjection === null) return `not ejected (${r.target})`
  const own = r.unit === 'own' ? ' own' : ''
  const missed = r.notEjected > 0 ? `, ${r.notEjected} seed(s) not` : ''
  return `${num(r.untilEjection)}${own} (${r.target}${missed})`
}

function resultCell(r: RowSummary): string {
  if (r.status === 'not-runnable') return 'not run'
  if (r.status === 'error') return 'ERROR'
  const all = r.passed === r.seeds.length
  const verdict = all ? 'pass' : 'FAIL'
  return r.seeds.length > 1 ? `${verdict} ${r.passed}/${r.seeds.length}` : verdict
}

export interface TableHeader {
  quick: boolean
  seeds: number[]
  startedAt: Date
  /** Which mxgate build the nodes ran (checkout and commit). */
  build: string
}

export function formatTable(rows: readonly RowSummary[], head: TableHeader): string[] {
  const seeds = head.seeds.length > 1 ? `seeds ${head.seeds.join(',')} (medians)` : `seed ${head.seeds[0]}`
  const mode = head.quick ? 'quick (CI: shortened counts and windows)' : 'full'
  const header = [
    'scenario',
    'messages',
    'until ejection',
    'false ejections',
    'bounced',
    'lost',
    'duplicates',
    'must show',
    'result',
  ]
  const body = rows.map((r) => [
    r.name,
    num(r.messages),
    untilCell(r),
    num(r.falseEjections),
    num(r.bounced),
    num(r.lost),
    num(r.duplicates),
    r.mustShow,
    resultCell(r),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  const out = [
    `mxgate scenario suite, ${mode}, ${seeds}, ${head.startedAt.toISOString()}`,
    `build: ${head.build}`,
    '',
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...body.map(line),
  ]
  const details: string[] = []
  for (const r of rows) {
    if (r.why !== undefined) details.push(`- ${r.name}: ${r.status === 'error' ? 'error' : 'not run'}: ${r.why}`)
    for (const f of r.failures) details.push(`- ${r.name}: FAIL ${f}`)
    for (const n of r.notes) details.push(`- ${r.name}: note ${n}`)
  }
  if (details.length > 0) out.push('', ...details)
  return out
}
