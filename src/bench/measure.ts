// One measured run: load through a relay (or straight at the sink), counted at the sink, with the relay's CPU and
// memory read from /proc around it.
import { performance } from 'node:perf_hooks'
import { runLoad } from './loadgen'
import { MemSampler, treeCpuMs } from './procs'
import type { Sink } from './sink'
import { percentile } from './stats'

/** What one run measured; NaN where a value does not apply (no relay CPU on the direct path). */
export interface RunSample {
  msgsPerSec: number
  p50Ms: number
  p99Ms: number
  cpuMsPerMsg: number
  peakMemBytes: number
  sent: number
  ok: number
  temp: number
  perm: number
  errors: number
  /** Messages the sink received for this run. */
  atSink: number
  /** Load generator CPU per message: if it nears the relay's, the generator is part of what is measured. */
  genCpuMsPerMsg: number
  /** Drain rows: ms from the backend's return to the first message at the sink. */
  firstAfterMs?: number
  problems: string[]
}

export interface LoadShape {
  concurrency: number
  count: number
  timeLimitMs: number
  messageBytes: number
  /** A new recipient per message (see LoadParams.uniqueRecipients). */
  uniqueRecipients?: boolean
}

function cpuOf(roots: number[]): number {
  let ms = 0
  for (const r of roots) ms += treeCpuMs(r)
  return ms
}

/**
 * Load at `port` and wait for the sink to see every accepted message (relays that queue go on delivering after the
 * generator stops). msgs/s = messages at the sink / (last arrival − first connect). Latency is the sender's:
 * connect → reply to the dot. `relayRoots` empty = no relay (the direct row).
 */
export async function measureThroughSink(
  port: number,
  sink: Sink,
  relayRoots: number[],
  shape: LoadShape,
  settleCapMs: number,
): Promise<RunSample> {
  const base = sink.count()
  sink.mark()
  const cpu0 = cpuOf(relayRoots)
  const rss = relayRoots.length > 0 ? new MemSampler(relayRoots) : undefined
  const t0 = performance.now()
  const r = await runLoad({ host: '127.0.0.1', port, ...shape })
  // Idle 3 s: Postfix's queue manager can pause that long between batches without being done.
  const s = await sink.waitFor(base + r.ok, 3_000, settleCapMs)
  const cpu1 = cpuOf(relayRoots)
  const peak = rss?.stop() ?? Number.NaN
  const atSink = s.count - base
  const problems = [...r.samples]
  if (atSink < r.ok) problems.push(`sink got ${atSink} of ${r.ok} accepted messages within ${settleCapMs} ms`)
  const elapsed = Number.isNaN(s.lastAt) ? Number.NaN : s.lastAt - t0
  return {
    msgsPerSec: atSink > 0 && elapsed > 0 ? (atSink * 1000) / elapsed : 0,
    p50Ms: percentile(r.latenciesMs, 50),
    p99Ms: percentile(r.latenciesMs, 99),
    cpuMsPerMsg: relayRoots.length > 0 && atSink > 0 ? (cpu1 - cpu0) / atSink : Number.NaN,
    peakMemBytes: peak,
    sent: r.sent,
    ok: r.ok,
    temp: r.temp,
    perm: r.perm,
    errors: r.errors,
    atSink,
    genCpuMsPerMsg: r.genCpuMsPerMsg,
    problems,
  }
}

/**
 * Load at a relay whose backends are all down: every 250 is a spool write. msgs/s = 250s at the generator / its
 * elapsed time; CPU per accepted message.
 */
export async function measureAccept(port: number, relayRoots: number[], shape: LoadShape): Promise<RunSample> {
  const cpu0 = cpuOf(relayRoots)
  const rss = new MemSampler(relayRoots)
  const r = await runLoad({ host: '127.0.0.1', port, ...shape })
  const cpu1 = cpuOf(relayRoots)
  return {
    msgsPerSec: r.msgsPerSec,
    p50Ms: percentile(r.latenciesMs, 50),
    p99Ms: percentile(r.latenciesMs, 99),
    cpuMsPerMsg: r.ok > 0 ? (cpu1 - cpu0) / r.ok : Number.NaN,
    peakMemBytes: rss.stop(),
    sent: r.sent,
    ok: r.ok,
    temp: r.temp,
    perm: r.perm,
    errors: r.errors,
    atSink: 0,
    genCpuMsPerMsg: r.genCpuMsPerMsg,
    problems: [...r.samples],
  }
}

/**
 * After the backend returns (the sink was just started, `returnedAt` = performance.now() then): waits until the
 * sink has `expected` messages, or the spool is empty and the sink quiet for a second, or capMs. msgs/s = messages
 * / (last arrival − first arrival), so the retry delay before the first one is reported apart (firstAfterMs).
 */
export async function measureDrain(
  sink: Sink,
  relayRoots: number[],
  expected: number,
  spoolFiles: () => number,
  returnedAt: number,
  capMs: number,
): Promise<RunSample> {
  const cpu0 = cpuOf(relayRoots)
  const rss = new MemSampler(relayRoots)
  const base = sink.count()
  let quietSince = performance.now()
  let seen = base
  for (;;) {
    await new Promise((r) => setTimeout(r, 100))
    const now = performance.now()
    if (sink.count() !== seen) {
      seen = sink.count()
      quietSince = now
    }
    if (seen - base >= expected) break
    if (now - returnedAt >= capMs) break
    if (now - quietSince >= 1_000 && spoolFiles() === 0) break
  }
  const cpu1 = cpuOf(relayRoots)
  const s = sink.snapshot()
  const atSink = s.count - base
  const span = s.lastAt - s.firstAt
  const problems: string[] = []
  if (atSink < expected) problems.push(`drained ${atSink} of ${expected} spooled messages within ${capMs} ms`)
  return {
    msgsPerSec: atSink > 1 && span > 0 ? ((atSink - 1) * 1000) / span : Number.NaN,
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    cpuMsPerMsg: atSink > 0 ? (cpu1 - cpu0) / atSink : Number.NaN,
    peakMemBytes: rss.stop(),
    sent: 0,
    ok: atSink,
    temp: 0,
    perm: 0,
    errors: 0,
    atSink,
    genCpuMsPerMsg: Number.NaN,
    firstAfterMs: Number.isNaN(s.firstAt) ? Number.NaN : s.firstAt - returnedAt,
    problems,
  }
}
