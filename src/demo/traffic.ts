// The demo's sender: `count` messages with unique Message-IDs, at most `concurrency` in flight, at most `rate`
// started per second, none started after the deadline or once aborted. One new SMTP connection per message, like
// independent senders on the Internet.
import { setMaxListeners } from 'node:events'
import { makeTestMessage, type SendResult, sendMessage } from '../testing/smtp-sender'

export interface TrafficOptions {
  target: { host: string; port: number }
  count: number
  concurrency: number
  rate: number
  /** Message-ID of message i (without angle brackets). */
  messageId: (i: number) => string
  from: string
  to: string
  /** No message starts after this time (ms since the epoch); the rest stay unsent. */
  deadline: number
  signal: AbortSignal
  /** Per wait for a reply. */
  timeoutMs: number
  onResult: (done: number, result: SendResult) => void
}

/** Resolves once every started message has its result; results[i] is undefined for messages never sent. */
export async function sendTraffic(opts: TrafficOptions): Promise<(SendResult | undefined)[]> {
  const results: (SendResult | undefined)[] = new Array(opts.count).fill(undefined)
  const start = Date.now()
  const gap = 1000 / opts.rate
  let next = 0
  let done = 0
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const finish = (): void => {
        opts.signal.removeEventListener('abort', finish)
        clearTimeout(t)
        resolve()
      }
      const t = setTimeout(finish, ms)
      opts.signal.addEventListener('abort', finish, { once: true })
    })
  const worker = async (): Promise<void> => {
    while (next < opts.count && !opts.signal.aborted) {
      const i = next++
      // Pacing: message i starts no earlier than i/rate seconds after the first.
      const startAt = start + i * gap
      if (startAt > opts.deadline) return
      const delay = startAt - Date.now()
      if (delay > 0) await wait(delay)
      if (opts.signal.aborted || Date.now() > opts.deadline) return
      const id = opts.messageId(i)
      const r = await sendMessage({
        ...opts.target,
        from: opts.from,
        to: [opts.to],
        message: makeTestMessage({ messageId: id, from: opts.from, to: [opts.to], subject: `mxgate demo #${i + 1}` }),
        timeoutMs: opts.timeoutMs,
      })
      results[i] = r
      opts.onResult(++done, r)
    }
  }
  const workers = Math.max(1, Math.min(opts.concurrency, opts.count))
  // Each waiting worker listens for the abort once: that is `workers` listeners by design, not a leak.
  setMaxListeners(workers + 10, opts.signal)
  await Promise.all(Array.from({ length: workers }, () => worker()))
  return results
}
