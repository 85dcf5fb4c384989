// External tools some tests drive (Debian's chromium, promtool): where they are, and what a test does without one.
// Locally a missing tool skips with the command that installs it; in CI (CI=true) it is a failure, since .ci/run
// installs them.
import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'

export const IN_CI = process.env.CI === 'true'

/** The first of `names` found on PATH (or an absolute path that exists), else null. */
export function findTool(names: string[]): string | null {
  for (const name of names) {
    if (path.isAbsolute(name)) {
      if (existsSync(name)) return name
      continue
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const full = path.join(dir, name)
      if (dir !== '' && existsSync(full)) return full
    }
  }
  return null
}

/**
 * Why a test of `what` cannot run (tool missing, outside CI), for tap's `skip`; false when it can. In CI a missing
 * tool fails `t` instead, naming the install command.
 */
export function skipWithout(t: Test, tool: string | null, what: string, install: string): string | false {
  if (tool !== null) return false
  const why = `${what} is not installed (${install}; .ci/run installs it)`
  if (IN_CI) {
    t.fail(`${why}: CI must run this test`)
    return why
  }
  return why
}
