// The scenario suite's sender: a bounded load (count and time), spread round-robin over the nodes, every message
// with its own Message-ID and real recipients, one new SMTP connection per message like independent senders.
// It remembers when each message started, so an ejection's time converts to "messages sent until then".
import { makeTestMessage, type SendResult, sendMessage } from '../testing/smtp-sender'
import type { LoadSpec } from './types'

export interface LoadTarget {
  port: number
}

export interface LoadRun {
  /** Message-ID (without brackets) and recipients of message i. */
  messageId(i: number): string
  recipients(i: number): string[]
  /** Results of the messages sent, in index order (undefined: not sent, time limit). */
  results: (SendResult | undefined)[]
  /** Epoch ms each message started, ascending (one entry per message started). */
  startTimes: number[]
}

export interface LoadHooks {
  /** Awaited before message i starts (operator actions); message i waits for it, others carry on. */
  before?: (i: number) => Promise<void> | void
  signal?: AbortSignal
}

/** Messages started at or before `at` (epoch ms). */
export function startedBy(startTimes: readonly number[], at: number): number {
  let lo = 0
  let hi = startTimes.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((startTimes[mid] as number) <= at) lo = mid + 1
    else hi = mid
  }
  return lo
}

export async function runLoad(tag: string, spec: LoadSpec, targets: LoadTarget[], hooks: LoadHooks = {}) {
  const cycle = spec.recipients ?? [1]
  const run: LoadRun = {
    messageId: (i) => `${tag}-${i}@scenario.test`,
    // Fifty real mailboxes, so per-recipient faults (`rcpt: 'user'`) hit valid users only.
    recipients: (i) =>
      Array.from({ length: cycle[i % cycle.length] ?? 1 }, (_, k) => `user${(i + k * 7) % 50}@example.com`),
    results: new Array(spec.messages).fill(undefined),
    startTimes: [],
  }
  const t0 = Date.now()
  const deadline = t0 + spec.timeLimitMs
  const gap = spec.rate === undefined ? 0 : 1000 / spec.rate
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < spec.messages && !hooks.signal?.aborted) {
      const i = next++
      const startAt = t0 + i * gap
      if (startAt > deadline) return
      const wait = startAt - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      if (Date.now() > deadline) return
      await hooks.before?.(i)
      const target = targets[i % targets.length] as LoadTarget
      const to = run.recipients(i)
      run.startTimes.push(Date.now())
      run.results[i] = await sendMessage({
        host: '127.0.0.1',
        port: target.port,
        from: `sender${i % 13}@remote.test`,
        to,
        message: makeTestMessage({ messageId: run.messageId(i), from: 'sender@remote.test', to }),
        timeoutMs: 60_000,
        pipelining: true,
      })
    }
  }
  const workers = Math.max(1, Math.min(spec.concurrency, spec.messages))
  await Promise.all(Array.from({ length: workers }, () => worker()))
  return run
}
