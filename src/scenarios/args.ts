// Command-line options of `npm run scenarios`, validated into typed values.
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ScenarioArgsError } from './errors'

export { ScenarioArgsError }

export interface SuiteOptions {
  /** Row names to run, in the order given; empty = every row. */
  only: string[]
  /** CI mode: each row's `quick` counts and config. */
  quick: boolean
  /** Seeds to run each row with (median over them in the table). */
  seeds: number[]
  /** A built checkout to run the nodes from (another branch's build); null = this one. */
  mxgateRoot: string | null
  list: boolean
  help: boolean
}

export const USAGE = `usage: npm run scenarios -- [options]

  --only NAME[,NAME]  run these rows only (see --list)
  --quick             CI mode: shorter counts and windows, set per row (the table says so)
  --seed N            first seed for the fake backends' faults (default 1)
  --seeds N           run each row with N seeds (N, N+1, …); the table shows medians (default 1)
  --mxgate-root DIR   run the nodes from another built checkout (e.g. a branch's worktree after its build)
  --list              list the rows and exit
  --help              this text
`

function whole(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ScenarioArgsError(`--${name}: expected a whole number from ${min} to ${max}, got "${text}"`)
  }
  return n
}

export function parseSuiteArgs(argv: string[], known: readonly string[]): SuiteOptions {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: argv,
      options: {
        only: { type: 'string' },
        quick: { type: 'boolean' },
        seed: { type: 'string' },
        seeds: { type: 'string' },
        'mxgate-root': { type: 'string' },
        list: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    throw new ScenarioArgsError((err as Error).message)
  }
  const only =
    typeof values.only === 'string'
      ? values.only
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : []
  const unknown = only.filter((n) => !known.includes(n))
  if (unknown.length > 0) {
    throw new ScenarioArgsError(`--only: no row named ${unknown.join(', ')}; rows: ${known.join(', ')}`)
  }
  const first = whole('seed', values.seed as string | undefined, 1, 0, 2 ** 31)
  const count = whole('seeds', values.seeds as string | undefined, 1, 1, 99)
  return {
    only,
    quick: values.quick === true,
    seeds: Array.from({ length: count }, (_, i) => first + i),
    mxgateRoot: typeof values['mxgate-root'] === 'string' ? path.resolve(values['mxgate-root']) : null,
    list: values.list === true,
    help: values.help === true,
  }
}
