// Runs a fast-check property inside a tap test with a fixed seed, so a failure repeats exactly and says how.
import path from 'node:path'
import fc from 'fast-check'
import type { Test } from 'tap'

/** The seed every property file uses unless FC_SEED is set (FC_SEED=random draws one and prints it). */
export const SEED = seedFromEnv(process.env.FC_SEED)

function seedFromEnv(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 20261204
  if (raw === 'random') return (Date.now() ^ (Math.random() * 0x7fffffff)) | 0
  const n = Number(raw)
  if (!Number.isInteger(n)) throw new Error(`FC_SEED=${raw}: write an integer, or "random"`)
  return n
}

/**
 * Asserts, under the current tap test's name, that `property` holds for `numRuns` generated cases. On failure the tap message carries fast-check's
 * report (shrunk counterexample, seed and path) and the command line that repeats the run.
 */
export function holds<Ts>(t: Test, file: string, property: fc.IProperty<Ts>, numRuns = 300): void {
  const name = t.name
  const details = fc.check(property, { seed: SEED, numRuns })
  if (!details.failed) {
    t.pass(name)
    return
  }
  const report = fc.defaultReportMessage(details) ?? 'property failed'
  t.fail(`${name}\n${report}\nre-run: FC_SEED=${SEED} npx tap ${path.relative(process.cwd(), file)}`)
}
