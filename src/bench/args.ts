// Command-line options of `npm run bench` and of the load generator, validated into typed values.
import { parseArgs } from 'node:util'
import { BenchError } from './errors'

export const ROW_IDS = [
  'direct',
  'postfix',
  'haraka',
  'mxgate',
  'mxgate-cold',
  'mxgate-noverify',
  'mxgate-nojournal',
  'mxgate-workers',
  'spool',
] as const
export type RowId = (typeof ROW_IDS)[number]

export interface LoadOptions {
  host: string
  port: number
  sizes: number[]
  concurrency: number
  count: number
  timeLimitMs: number
}

export interface BenchOptions {
  sizes: number[]
  concurrency: number
  /** Messages per measured run (upper bound; the time limit usually ends a run first on fast paths). */
  count: number
  timeLimitMs: number
  reps: number
  warmup: boolean
  rows: RowId[]
  outDir: string
  /** apt-get install postfix when smtp-sink is missing. */
  install: boolean
  quick: boolean
}

const KIB = 1024

/** '5k' → 5120, '100k' → 102400, '1m' → 1048576, '800' → 800 bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)b?$/i.exec(text.trim())
  if (!m) throw new BenchError('EBENCHARGS', `--size: cannot read "${text}"; use a byte count or 5k, 100k, 1m`)
  const unit = (m[2] ?? '').toLowerCase()
  const bytes = Math.round(Number(m[1]) * (unit === 'k' ? KIB : unit === 'm' ? KIB * KIB : 1))
  if (bytes < 200) throw new BenchError('EBENCHARGS', `--size: ${text} is below 200 bytes, too small for the headers`)
  return bytes
}

/** 5120 → '5k', 102400 → '100k', 800 → '800b': the label used in tables and file names. */
export function sizeLabel(bytes: number): string {
  if (bytes % (KIB * KIB) === 0) return `${bytes / (KIB * KIB)}m`
  if (bytes % KIB === 0) return `${bytes / KIB}k`
  return `${bytes}b`
}

function positiveInt(name: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new BenchError('EBENCHARGS', `--${name}: expected a whole number from 1 to ${max}, got "${text}"`)
  }
  return n
}

function seconds(name: string, text: string | undefined, fallbackMs: number): number {
  if (text === undefined) return fallbackMs
  const s = Number(text)
  if (!Number.isFinite(s) || s <= 0 || s > 3600) {
    throw new BenchError('EBENCHARGS', `--${name}: expected seconds from >0 to 3600, got "${text}"`)
  }
  return Math.round(s * 1000)
}

function sizes(text: string | undefined): number[] {
  if (text === undefined || text === 'all') return [5 * KIB, 100 * KIB]
  return text.split(',').map(parseSize)
}

function parse(argv: readonly string[], options: NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new BenchError('EBENCHARGS', `${(err as Error).message}; see bench/README.md for the options`, { cause: err })
  }
}

/** Options of `node dist/bench/loadgen.js`: one load run against any SMTP server. */
export function parseLoadArgs(argv: readonly string[]): LoadOptions {
  const v = parse(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    size: { type: 'string' },
    concurrency: { type: 'string' },
    count: { type: 'string' },
    'time-limit': { type: 'string' },
  })
  const host = (v.host as string | undefined) ?? '127.0.0.1'
  return {
    host,
    port: positiveInt('port', v.port as string | undefined, 2525, 65535),
    sizes: sizes(v.size as string | undefined),
    concurrency: positiveInt('concurrency', v.concurrency as string | undefined, 20, 1000),
    count: positiveInt('count', v.count as string | undefined, 10_000, 10_000_000),
    timeLimitMs: seconds('time-limit', v['time-limit'] as string | undefined, 10_000),
  }
}

/** Options of `npm run bench`. --quick: one rep and short runs, for a look in about two minutes. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const v = parse(argv, {
    size: { type: 'string' },
    concurrency: { type: 'string' },
    count: { type: 'string' },
    'time-limit': { type: 'string' },
    reps: { type: 'string' },
    quick: { type: 'boolean' },
    'no-warmup': { type: 'boolean' },
    rows: { type: 'string' },
    out: { type: 'string' },
    'no-install': { type: 'boolean' },
  })
  const quick = v.quick === true
  const rowsText = v.rows as string | undefined
  const rows = rowsText === undefined ? [...ROW_IDS] : rowsText.split(',').map((r) => r.trim())
  for (const r of rows) {
    if (!(ROW_IDS as readonly string[]).includes(r)) {
      throw new BenchError('EBENCHARGS', `--rows: unknown row "${r}"; known rows: ${ROW_IDS.join(', ')}`)
    }
  }
  return {
    sizes: sizes(v.size as string | undefined),
    concurrency: positiveInt('concurrency', v.concurrency as string | undefined, 20, 1000),
    count: positiveInt('count', v.count as string | undefined, quick ? 2_000 : 30_000, 10_000_000),
    timeLimitMs: seconds('time-limit', v['time-limit'] as string | undefined, quick ? 1_500 : 3_000),
    reps: positiveInt('reps', v.reps as string | undefined, quick ? 1 : 3, 100),
    warmup: v['no-warmup'] !== true,
    rows: rows as RowId[],
    outDir: (v.out as string | undefined) ?? 'bench/results',
    install: v['no-install'] !== true,
    quick,
  }
}
