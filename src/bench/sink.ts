// Postfix's smtp-sink as the backend of every row, with its running counters read so messages are counted at the sink.
import { performance } from 'node:perf_hooks'
import { type Child, spawnChild } from './children'
import { BenchError } from './errors'
import { freePort, waitForBanner } from './net'

export interface SinkCount {
  count: number
  /** performance.now() of the first counter change since the last mark() (NaN when none). */
  firstAt: number
  /** performance.now() of the last counter change (NaN when none since the last mark()). */
  lastAt: number
}

export interface Sink {
  port: number
  pid: number
  /** Messages received (the "." of each accepted transaction) since the sink started. */
  count(): number
  /** Forgets first/last change times, so the next changes time a new measurement. */
  mark(): void
  snapshot(): SinkCount
  /**
   * Resolves when count() >= target, when the counter has not moved for idleMs, or at timeoutMs, whichever
   * comes first. Relays that queue (Postfix) keep delivering after the load generator stops; this waits for them.
   */
  waitFor(target: number, idleMs: number, timeoutMs: number): Promise<SinkCount>
  stop(): Promise<void>
}

/** The last "mesg=N" in smtp-sink -c output (its counters are rewritten in place with \r). */
export function parseSinkCounter(text: string): number | undefined {
  const all = [...text.matchAll(/mesg=(\d+)/g)]
  const last = all[all.length - 1]
  return last === undefined ? undefined : Number(last[1])
}

/** Starts smtp-sink on 127.0.0.1 (a free port unless one is given) and waits for its banner. */
export async function startSink(port?: number): Promise<Sink> {
  const p = port ?? (await freePort())
  let count = 0
  let firstAt = Number.NaN
  let lastAt = Number.NaN
  let tail = ''
  const waiters = new Set<() => void>()
  const onStdout = (chunk: Buffer): void => {
    // Keep a short tail so a counter split across chunks is still read whole.
    tail = (tail + chunk.toString('latin1')).slice(-256)
    const n = parseSinkCounter(tail.slice(0, tail.lastIndexOf('\r') + 1) || tail)
    if (n !== undefined && n !== count) {
      count = n
      const now = performance.now()
      if (Number.isNaN(firstAt)) firstAt = now
      lastAt = now
      for (const w of waiters) w()
    }
  }
  // -u: smtp-sink refuses to run as root; -m: more connections than any row opens; backlog 1024 for bursts.
  const args = ['-c', '-m', '1024', `127.0.0.1:${p}`, '1024']
  if (process.getuid?.() === 0) args.unshift('-u', 'nobody')
  let child: Child
  try {
    child = spawnChild('smtp-sink', args, { onStdout })
    await waitForBanner(p, 'smtp-sink', 5_000, () => child.alive())
  } catch (err) {
    throw new BenchError('EBENCHSTART', `smtp-sink did not start on port ${p}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  // The banner probe above is one session, no message: the counter stays 0 until the first ".".
  const snapshot = (): SinkCount => ({ count, firstAt, lastAt })
  return {
    port: p,
    pid: child.pid,
    count: () => count,
    mark: () => {
      firstAt = Number.NaN
      lastAt = Number.NaN
    },
    snapshot,
    waitFor: (target, idleMs, timeoutMs) =>
      new Promise<SinkCount>((resolve) => {
        const start = performance.now()
        let since = performance.now()
        let seen = count
        const check = (): void => {
          const now = performance.now()
          if (count !== seen) {
            seen = count
            since = now
          }
          if (count >= target || now - since >= idleMs || now - start >= timeoutMs) {
            clearInterval(timer)
            waiters.delete(check)
            resolve(snapshot())
          }
        }
        const timer = setInterval(check, 20)
        waiters.add(check)
        check()
      }),
    stop: () => child.stop(1_000),
  }
}
