// `npm run scenarios`: runs the rows of rows.ts (all, or --only some) once per seed, judges each run, prints the
// table on stdout (progress on stderr). Exit 1 when a row that ran failed or broke; rows this build cannot run
// (their config is refused) are listed with the reason and do not fail the suite.
import { execFileSync } from 'node:child_process'
import { ROOT } from '../testing/mxgate-process'
import { parseSuiteArgs, ScenarioArgsError, type SuiteOptions, USAGE } from './args'
import { judgeRun } from './checks'
import { ScenarioRunError } from './errors'
import { SCENARIOS } from './rows'
import { runScenario } from './run'
import { notRun, type RowSummary, summarize } from './summary'
import { formatTable } from './table'
import type { CheckResult, RunRecord, Scenario } from './types'

/** "DIR @ abc1234" (with "+ changes" when the work tree differs from it): which build the table is about. */
export function describeBuild(root: string): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = git('status', '--porcelain', '--untracked-files=no') === '' ? '' : ' + uncommitted changes'
    return `${root} @ ${git('rev-parse', '--short', 'HEAD')}${dirty}`
  } catch {
    return root
  }
}

export interface SuiteIo {
  out: (line: string) => void
  progress: (line: string) => void
  signal?: AbortSignal
}

async function runRow(s: Scenario, opts: SuiteOptions, io: SuiteIo): Promise<RowSummary> {
  const runs: { record: RunRecord; checks: CheckResult[] }[] = []
  for (const seed of opts.seeds) {
    if (io.signal?.aborted) break
    io.progress(`${s.name}: seed ${seed}${opts.quick ? ' (quick)' : ''}`)
    try {
      const outcome = await runScenario(s, {
        quick: opts.quick,
        seed,
        ...(opts.mxgateRoot === null ? {} : { root: opts.mxgateRoot }),
        log: io.progress,
        ...(io.signal ? { signal: io.signal } : {}),
      })
      if (outcome.status === 'not-runnable') return notRun(s, 'not-runnable', outcome.why, opts.seeds)
      for (const e of outcome.record.ejections) {
        const secs = e.until === null ? '' : ` for ${Math.round((e.until - e.since) / 100) / 10}s`
        io.progress(
          `  ejected ${e.backend} at message ${e.atMessage} (own ${e.ownMessages}; ${e.nodes.join('+')}${secs}): ${e.reason}`,
        )
      }
      if (outcome.record.maxOut > 0)
        io.progress(`  most out at once: ${outcome.record.maxOut} (${outcome.record.maxOutWhich})`)
      const checks = judgeRun(s, outcome.record)
      for (const c of checks) io.progress(`  ${c.pass ? 'ok  ' : 'FAIL'} ${c.detail}`)
      runs.push({ record: outcome.record, checks })
    } catch (err) {
      // Our own errors say what to fix; anything else is a bug in the harness or mxgate: keep its stack.
      const text = err instanceof ScenarioRunError ? err.message : ((err as Error).stack ?? String(err))
      return notRun(s, 'error', `seed ${seed}: ${text}`, opts.seeds)
    }
  }
  return summarize(s, runs)
}

/** Runs the selected rows; resolves their summaries (the tap test uses this directly). */
export async function runSuite(opts: SuiteOptions, io: SuiteIo): Promise<RowSummary[]> {
  const startedAt = new Date()
  const rows = opts.only.length === 0 ? SCENARIOS : opts.only.map((n) => SCENARIOS.find((s) => s.name === n)!)
  const summaries: RowSummary[] = []
  for (const s of rows) summaries.push(await runRow(s, opts, io))
  const build = describeBuild(opts.mxgateRoot ?? ROOT)
  for (const line of formatTable(summaries, { quick: opts.quick, seeds: opts.seeds, startedAt, build })) io.out(line)
  return summaries
}

export async function main(argv: string[]): Promise<number> {
  let opts: SuiteOptions
  try {
    opts = parseSuiteArgs(
      argv,
      SCENARIOS.map((s) => s.name),
    )
  } catch (err) {
    if (!(err instanceof ScenarioArgsError)) throw err
    process.stderr.write(`scenarios: ${err.message}\n\n${USAGE}`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (opts.list) {
    for (const s of SCENARIOS)
      process.stdout.write(`${s.name.padEnd(16)} ${s.title}\n${''.padEnd(16)} must show: ${s.mustShow}\n`)
    return 0
  }
  const abort = new AbortController()
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130)
    process.stderr.write('scenarios: stopping after the current run (again to force)\n')
    abort.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const rows = await runSuite(opts, {
      out: (l) => process.stdout.write(`${l}\n`),
      progress: (l) => process.stderr.write(`${l}\n`),
      signal: abort.signal,
    })
    if (abort.signal.aborted) return 130
    const bad = rows.some((r) => r.status === 'error' || (r.status === 'ran' && r.passed < r.seeds.length))
    return bad ? 1 : 0
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`scenarios: ${(err as Error).stack ?? String(err)}\n`)
      process.exit(1)
    },
  )
}
