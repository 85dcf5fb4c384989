// Child processes a test (or the scenario suite) starts die with the process that started them, even when tap
// kills it for a timeout (tap sends SIGALRM before SIGKILL; signal-exit runs this on SIGALRM, SIGTERM, SIGINT and
// normal exit alike).
import type { ChildProcess } from 'node:child_process'
import { onExit } from 'signal-exit'

const live = new Set<ChildProcess>()

onExit(() => {
  for (const child of live) {
    try {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
})

/** Registers `child` to be killed if the test process goes away first. */
export function reap<C extends ChildProcess>(child: C): C {
  live.add(child)
  child.once('exit', () => live.delete(child))
  return child
}
