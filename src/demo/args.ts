// `mxgate demo` options: parsed and checked here so the orchestration only sees valid numbers. Pure.

export interface DemoOptions {
  /** Messages to send. */
  count: number
  /** Messages in flight at once (one SMTP connection each). */
  concurrency: number
  /**
   * At most this many messages start per second. The default run (~40 s) gives the detector its ~1,000 messages
   * to catch mx3, the breaker a few seconds of mx4's refusals, and mx3, back in probation at 5% of its weight,
   * traffic enough for its 100 good messages; a loaded machine may send slower than this anyway.
   */
  rate: number
  help: boolean
}

export const DEMO_DEFAULTS: DemoOptions = { count: 8000, concurrency: 20, rate: 200, help: false }

export const DEMO_USAGE = `usage: mxgate demo [--count N] [--concurrency N] [--rate N]

Plays the incident mxgate exists for: four fake backends on loopback, mx3 quietly failing 5% of its messages and mx4
going down hard part-way, mxgate on built-in defaults (in-memory state). Sends messages through it, shows the
outlier detector ejecting mx3 and the breaker ejecting mx4 with their evidence, mx3 fixed and re-admitted through
probation, and prints a summary. Stops everything it started.

  --count N         messages to send (default ${DEMO_DEFAULTS.count})
  --concurrency N   messages in flight at once (default ${DEMO_DEFAULTS.concurrency})
  --rate N          at most N messages started per second (default ${DEMO_DEFAULTS.rate})
`

export class DemoUsageError extends Error {
  readonly code = 'EDEMOUSAGE'
  constructor(message: string) {
    super(message)
    this.name = 'DemoUsageError'
  }
}

const LIMITS: Record<'count' | 'concurrency' | 'rate', [number, number]> = {
  count: [1, 100_000],
  concurrency: [1, 500],
  rate: [1, 100_000],
}

/** Throws DemoUsageError naming the option and the accepted range. */
export function parseDemoArgs(argv: readonly string[]): DemoOptions {
  const opts: DemoOptions = { ...DEMO_DEFAULTS }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      opts.help = true
      continue
    }
    const m = /^--(count|concurrency|rate)(?:=(.*))?$/.exec(arg)
    if (!m) throw new DemoUsageError(`unknown option "${arg}"; the demo knows --count, --concurrency and --rate`)
    const name = m[1] as keyof typeof LIMITS
    const raw = m[2] ?? argv[++i]
    if (raw === undefined) throw new DemoUsageError(`--${name} needs a number, e.g. --${name} ${DEMO_DEFAULTS[name]}`)
    const n = Number(raw)
    const [min, max] = LIMITS[name]
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      throw new DemoUsageError(`--${name} "${raw}" must be a whole number from ${min} to ${max}`)
    }
    opts[name] = n
  }
  return opts
}
