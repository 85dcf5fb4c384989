// Plain-text tables for `mxgate status` and `mxgate spool ls`; colours only on a terminal that wants them.
import type { BackendView, SpoolItemView } from '../admin/types'
import { formatAgo, formatBytes, formatIn } from './duration'
import { safeText } from './terminal-text'

export type Colour = 'red' | 'green' | 'yellow' | 'cyan' | 'dim' | 'bold'

const CODES: Record<Colour, [number, number]> = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
  dim: [2, 22],
  bold: [1, 22],
}

export interface TableStyle {
  colour: boolean
  /** Terminal width; the widest free-text column is cut to fit. Undefined: never cut (pipes, files). */
  columns?: number
}

/** Colour on a TTY only, and never with NO_COLOR set (https://no-color.org) or TERM=dumb. */
export function wantsColour(isTTY: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  if (!isTTY) return false
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  return env.TERM !== 'dumb'
}

export interface Cell {
  text: string
  colour?: Colour
}

export interface Column {
  title: string
  align?: 'left' | 'right'
  /** The column that gives up width when the terminal is narrow. */
  flexible?: boolean
}

function paint(text: string, colour: Colour | undefined, style: TableStyle): string {
  if (!style.colour || colour === undefined) return text
  const [on, off] = CODES[colour]
  return `\u001b[${on}m${text}\u001b[${off}m`
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`
}

/**
 * Renders rows under a header; widths come from the plain text, so colour codes never skew alignment. Cell text is
 * escaped (safeText) first: a backend reply must not write control characters to the operator's terminal.
 */
export function renderTable(columns: Column[], unsafeRows: Cell[][], style: TableStyle): string {
  const rows = unsafeRows.map((r) => r.map((c) => ({ ...c, text: safeText(c.text) })))
  const gap = 2
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => r[i]?.text.length ?? 0)))
  const flex = columns.findIndex((c) => c.flexible)
  if (style.columns !== undefined && flex >= 0) {
    const total = widths.reduce((a, b) => a + b, 0) + gap * (columns.length - 1)
    const over = total - style.columns
    if (over > 0) widths[flex] = Math.max(columns[flex]!.title.length, 12, widths[flex]! - over)
  }
  const line = (cells: Cell[], header: boolean) =>
    columns
      .map((c, i) => {
        const w = widths[i]!
        const cell = cells[i] ?? { text: '' }
        const text = cut(cell.text, w)
        const padded = c.align === 'right' ? text.padStart(w) : text.padEnd(w)
        return paint(padded, header ? 'bold' : cell.colour, style)
      })
      .join(' '.repeat(gap))
      .trimEnd()
  return `${[
    line(
      columns.map((c) => ({ text: c.title })),
      true,
    ),
    ...rows.map((r) => line(r, false)),
  ].join('\n')}\n`
}

const STATE_COLOUR: Record<BackendView['state'], Colour> = {
  admitted: 'green',
  probation: 'yellow',
  probing: 'yellow',
  trial: 'yellow',
  draining: 'cyan',
  ejected: 'red',
  'manual-ejected': 'red',
}

/** The failure this tool exists for is a backend failing "a few percent": below 99 % is worth a look, 95 % is bad. */
function ratioColour(ratio: number): Colour | undefined {
  if (ratio < 0.95) return 'red'
  if (ratio < 0.99) return 'yellow'
  return undefined
}

function percent(ratio: number): string {
  const p = ratio * 100
  return `${p === 100 ? '100' : p.toFixed(1)}%`
}

function perMinute(n: number): string {
  return n >= 10 ? String(Math.round(n)) : n.toFixed(1)
}

/** The WHY column: the reason, then who set a manual state and when the ejection ends. */
export function whyText(b: BackendView, now: number): string {
  const extra: string[] = []
  if (b.by !== null) extra.push(`by ${b.by}`)
  if (b.until !== null) extra.push(`ends ${formatIn(b.until, now)}`)
  const reason = b.reason ?? ''
  if (extra.length === 0) return reason === '' ? '-' : reason
  return reason === '' ? `(${extra.join(', ')})` : `${reason} (${extra.join(', ')})`
}

export function statusTable(node: string, backends: BackendView[], now: number, style: TableStyle): string {
  const head = `node ${paint(safeText(node), 'bold', style)}: ${backends.length} backend${backends.length === 1 ? '' : 's'}, ${
    backends.filter((b) => b.state === 'admitted').length
  } admitted\n${detectorFlags(backends)}`
  const columns: Column[] = [
    { title: 'BACKEND' },
    { title: 'STATE' },
    { title: 'WHY', flexible: true },
    { title: 'SINCE' },
    { title: 'IN FLIGHT', align: 'right' },
    { title: 'SUCCESS', align: 'right' },
    { title: 'MSGS/MIN', align: 'right' },
  ]
  const rows: Cell[][] = backends.map((b) => [
    { text: b.id },
    { text: b.state, colour: STATE_COLOUR[b.state] },
    { text: whyText(b, now) },
    { text: formatAgo(b.since, now) },
    { text: String(b.inFlight) },
    b.successRatio === null
      ? { text: '-', colour: 'dim' }
      : { text: percent(b.successRatio), ...optionalColour(ratioColour(b.successRatio)) },
    { text: perMinute(b.messagesPerMinute) },
  ])
  // Canary round trip only where canaries are on: the last 250 → token-back time, and losses if any.
  if (backends.some((b) => b.canary !== undefined)) {
    columns.push({ title: 'CANARY RTT', align: 'right' })
    for (const [i, b] of backends.entries()) rows[i]!.push(canaryCell(b))
  }
  return head + renderTable(columns, rows, style)
}

function canaryCell(b: BackendView): Cell {
  const c = b.canary
  if (!c || c.lastRoundTripMs === null) return { text: c && c.lost > 0 ? `- (${c.lost} lost)` : '-', colour: 'dim' }
  const rtt = c.lastRoundTripMs < 1000 ? `${c.lastRoundTripMs}ms` : `${(c.lastRoundTripMs / 1000).toFixed(1)}s`
  return c.lost > 0 ? { text: `${rtt} (${c.lost} lost)`, colour: 'yellow' } : { text: rtt }
}

/** Pool-wide detector flags under the head line, when any is up. */
function detectorFlags(backends: BackendView[]): string {
  const d = backends.find((b) => b.detector !== undefined)?.detector
  if (!d) return ''
  const flags = [
    d.mode === 'observe' ? 'detector in observe mode' : null,
    d.budgetFrozen ? 'detector budget reached: further ejections held back' : null,
    d.poolDegraded ? 'pool degraded: most backends failing together' : null,
    ...backends.filter((b) => b.detector?.wouldEject).map((b) => `detector would eject ${b.id}`),
  ].filter((f) => f !== null)
  return flags.length === 0 ? '' : `${flags.join('; ')}\n`
}

function optionalColour(colour: Colour | undefined): { colour?: Colour } {
  return colour === undefined ? {} : { colour }
}

export function nextAttemptText(m: SpoolItemView, now: number): string {
  return m.held ? 'held' : formatIn(m.nextAttemptAt, now)
}

export function spoolTable(node: string, items: SpoolItemView[], now: number, style: TableStyle): string {
  if (items.length === 0) return `node ${safeText(node)}: the spool is empty\n`
  const total = items.reduce((a, m) => a + m.size, 0)
  const head = `node ${paint(safeText(node), 'bold', style)}: ${items.length} message${items.length === 1 ? '' : 's'}, ${formatBytes(total)}\n`
  const columns: Column[] = [
    { title: 'ID' },
    { title: 'AGE' },
    { title: 'ATTEMPTS', align: 'right' },
    { title: 'NEXT ATTEMPT' },
    { title: 'LAST ERROR', flexible: true },
    { title: 'SIZE', align: 'right' },
  ]
  const rows: Cell[][] = items.map((m) => [
    { text: m.id },
    { text: formatAgo(m.receivedAt, now).replace(/ ago$/, '') },
    { text: String(m.attempts) },
    { text: nextAttemptText(m, now), ...optionalColour(m.held ? 'yellow' : undefined) },
    { text: m.lastError ?? '-' },
    { text: formatBytes(m.size) },
  ])
  return head + renderTable(columns, rows, style)
}
