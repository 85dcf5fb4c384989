// How each row of the table is measured: which peer is started, what is counted, how often.
import { performance } from 'node:perf_hooks'
import { type BenchOptions, sizeLabel } from './args'
import { isBenchError } from './errors'
import { startHarakaRelay } from './haraka'
import { type LoadShape, measureAccept, measureDrain, measureThroughSink, type RunSample } from './measure'
import { countFiles, NO_JOURNAL_INI, SPOOL_ROW_INI, startMxgate } from './mxgate'
import { freePort } from './net'
import { startPostfixRelay } from './postfix'
import { addRatios, type RowReport, summarize } from './report'
import { type Sink, startSink } from './sink'

export const BENCH_DOMAIN = 'bench.example'

export interface RowContext {
  opts: BenchOptions
  sink: Sink
  log: (line: string) => void
}

function shape(opts: BenchOptions, messageBytes: number, warm = false): LoadShape {
  return {
    concurrency: opts.concurrency,
    count: warm ? Math.min(opts.count, 500) : opts.count,
    timeLimitMs: warm ? Math.min(opts.timeLimitMs, 1_000) : opts.timeLimitMs,
    messageBytes,
  }
}

function settleCap(opts: BenchOptions): number {
  return opts.quick ? 20_000 : 60_000
}

/** A drain is timed from first to last arrival, so a cap only bounds the wait; it need not see the spool empty. */
function drainCap(opts: BenchOptions): number {
  return opts.quick ? 10_000 : 30_000
}

function row(id: string, label: string, sizeBytes: number, runs: RunSample[], reason?: string): RowReport {
  const problems = [...new Set(runs.flatMap((r) => r.problems))]
  const why = reason ?? (problems.length > 0 ? problems.slice(0, 3).join(' | ') : undefined)
  return {
    id,
    label,
    sizeBytes,
    available: runs.length > 0,
    ...(why === undefined ? {} : { reason: why }),
    runs,
    summary: summarize(runs),
    vsPostfix: Number.NaN,
    vsDirect: Number.NaN,
  }
}

function unavailable(id: string, label: string, opts: BenchOptions, err: unknown, log: (l: string) => void) {
  const first = (err as Error).message.split('\n')[0] ?? 'unknown'
  // The full text (a maillog, a Haraka log) goes to stderr; the table gets the first line.
  if (!isBenchError(err, 'EBENCHUNAVAILABLE')) log(`${label}: ${(err as Error).message}`)
  return opts.sizes.map((size) => row(id, label, size, [], first))
}

function describe(label: string, size: number, rep: string, s: RunSample): string {
  const bad = s.temp + s.perm + s.errors
  return (
    `${label} ${sizeLabel(size)} ${rep}: ${s.msgsPerSec.toFixed(0)} msgs/s, p50 ${s.p50Ms.toFixed(1)} ms, ` +
    `p99 ${s.p99Ms.toFixed(1)} ms, relay CPU ${s.cpuMsPerMsg.toFixed(2)} ms/msg, sink ${s.atSink}/${s.ok}` +
    (bad > 0 ? `, not 250: ${bad}` : '') +
    (s.firstAfterMs === undefined ? '' : `, first after ${s.firstAfterMs.toFixed(0)} ms`) +
    (s.problems.length > 0 ? `\n  first problems: ${s.problems.slice(0, 3).join(' | ')}` : '')
  )
}

/** Warm-up (discarded) then opts.reps measured runs of the same load, for each size. */
async function repeat(
  ctx: RowContext,
  id: string,
  label: string,
  runOnce: (shape: LoadShape) => Promise<RunSample>,
): Promise<RowReport[]> {
  const out: RowReport[] = []
  for (const size of ctx.opts.sizes) {
    if (ctx.opts.warmup) ctx.log(describe(label, size, 'warm-up', await runOnce(shape(ctx.opts, size, true))))
    const runs: RunSample[] = []
    for (let i = 1; i <= ctx.opts.reps; i++) {
      const s = await runOnce(shape(ctx.opts, size))
      ctx.log(describe(label, size, `rep ${i}/${ctx.opts.reps}`, s))
      runs.push(s)
    }
    out.push(row(id, label, size, runs))
  }
  return out
}

export function directRows(ctx: RowContext): Promise<RowReport[]> {
  return repeat(ctx, 'direct', 'direct → smtp-sink', (sh) =>
    measureThroughSink(ctx.sink.port, ctx.sink, [], sh, settleCap(ctx.opts)),
  )
}

export async function postfixRows(ctx: RowContext): Promise<RowReport[]> {
  const label = 'Postfix relay (fsync on)'
  let relay: Awaited<ReturnType<typeof startPostfixRelay>>
  try {
    relay = await startPostfixRelay(ctx.sink.port)
  } catch (err) {
    return unavailable('postfix', `${label}`, ctx.opts, err, ctx.log)
  }
  try {
    return await repeat(ctx, 'postfix', `Postfix ${relay.version} relay (fsync on)`, (sh) =>
      measureThroughSink(relay.port, ctx.sink, [relay.masterPid], sh, settleCap(ctx.opts)),
    )
  } finally {
    await relay.stop()
  }
}

export async function harakaRows(ctx: RowContext): Promise<RowReport[]> {
  const label = 'Haraka smtp_forward, 1 process'
  let relay: Awaited<ReturnType<typeof startHarakaRelay>>
  try {
    relay = await startHarakaRelay(ctx.sink.port, BENCH_DOMAIN)
  } catch (err) {
    return unavailable('haraka', label, ctx.opts, err, ctx.log)
  }
  try {
    return await repeat(ctx, 'haraka', `Haraka ${relay.version} smtp_forward, 1 process`, (sh) =>
      measureThroughSink(relay.port, ctx.sink, [relay.pid], sh, settleCap(ctx.opts)),
    )
  } finally {
    await relay.stop()
  }
}

/**
 * The mxgate rows, all on stock settings except the one thing a variant changes: `warm` (the headline row) sends
 * every message to one recipient, so after the first the recipient check is a cache hit, and journals every message
 * (the replay journal is on by default: batched, fsynced); `cold` gives each message a new recipient, so every RCPT
 * costs a check on the backend (MAIL, RCPT, RSET) before the delivery; `noverify` turns recipient verification off
 * and `nojournal` the journal, for the difference each makes.
 */
export type MxgateVariant = 'warm' | 'cold' | 'noverify' | 'nojournal'

const VERIFY_OFF_INI = '; written by the bench for the mxgate-noverify row\n[verify]\nenabled = false\n'

/** mxgate's inline path: every message forwarded to the sink before the sender gets 250. */
export async function mxgateRows(
  ctx: RowContext,
  workers: number,
  variant: MxgateVariant = 'warm',
): Promise<RowReport[]> {
  const id = workers > 0 ? 'mxgate-workers' : variant === 'warm' ? 'mxgate' : `mxgate-${variant}`
  const procs = workers === 0 ? '1 process' : `${workers} workers`
  const how = {
    warm: 'verification on, cache warm; journal on',
    cold: 'verification on, cache cold; journal on',
    noverify: 'verification off; journal on',
    nojournal: 'verification on, cache warm; journal off',
  }
  const label = `mxgate inline, ${procs} (${how[variant]})`
  let relay: Awaited<ReturnType<typeof startMxgate>>
  try {
    relay = await startMxgate({
      backendPort: ctx.sink.port,
      workers,
      domain: BENCH_DOMAIN,
      ...(variant === 'noverify' ? { ini: VERIFY_OFF_INI } : variant === 'nojournal' ? { ini: NO_JOURNAL_INI } : {}),
    })
  } catch (err) {
    return unavailable(id, label, ctx.opts, err, ctx.log)
  }
  try {
    return await repeat(ctx, id, label, (sh) =>
      measureThroughSink(
        relay.port,
        ctx.sink,
        [relay.pid],
        variant === 'cold' ? { ...sh, uniqueRecipients: true } : sh,
        settleCap(ctx.opts),
      ),
    )
  } finally {
    await relay.stop()
  }
}

/**
 * The spool rows. Per rep a fresh mxgate whose only backend is a closed port: the accept rate is the spool's
 * (fsync on). Then smtp-sink starts on that port and the drain rate is what reaches it.
 */
export async function spoolRows(ctx: RowContext): Promise<RowReport[]> {
  const acceptLabel = 'mxgate spool accept (backends down)'
  const drainLabel = 'mxgate spool drain (backend back)'
  const out: RowReport[] = []
  for (const size of ctx.opts.sizes) {
    const accepts: RunSample[] = []
    const drains: RunSample[] = []
    let reason: string | undefined
    for (let i = 1; i <= ctx.opts.reps && reason === undefined; i++) {
      const backendPort = await freePort()
      let relay: Awaited<ReturnType<typeof startMxgate>> | undefined
      let sink: Sink | undefined
      try {
        relay = await startMxgate({ backendPort, workers: 0, domain: BENCH_DOMAIN, ini: SPOOL_ROW_INI })
        let spooled = 0
        if (ctx.opts.warmup) {
          const w = await measureAccept(relay.port, [relay.pid], shape(ctx.opts, size, true))
          spooled += w.ok
          ctx.log(describe(acceptLabel, size, 'warm-up', w))
        }
        const a = await measureAccept(relay.port, [relay.pid], shape(ctx.opts, size))
        ctx.log(describe(acceptLabel, size, `rep ${i}/${ctx.opts.reps}`, a))
        if (a.ok === 0) {
          reason = `spool not wired: ${a.temp + a.perm + a.errors} of ${a.sent} refused (${a.problems[0] ?? ''})`
          break
        }
        spooled += a.ok
        accepts.push(a)
        sink = await startSink(backendPort)
        const returnedAt = performance.now()
        const spoolDir = relay.spoolDir
        const d = await measureDrain(
          sink,
          [relay.pid],
          spooled,
          () => countFiles(spoolDir),
          returnedAt,
          drainCap(ctx.opts),
        )
        ctx.log(describe(drainLabel, size, `rep ${i}/${ctx.opts.reps}`, d))
        drains.push(d)
      } catch (err) {
        reason = (err as Error).message.split('\n')[0]
        if (!isBenchError(err, 'EBENCHUNAVAILABLE')) ctx.log(`${acceptLabel}: ${(err as Error).message}`)
      } finally {
        await sink?.stop()
        await relay?.stop()
      }
    }
    out.push(row('spool-accept', acceptLabel, size, accepts, reason))
    out.push(row('spool-drain', drainLabel, size, drains, reason))
  }
  return out
}

/** Orders rows by size, then in the order they were measured, and fills the ratio columns. */
export function finishRows(rows: RowReport[], sizes: readonly number[]): RowReport[] {
  const sorted = sizes.flatMap((size) => rows.filter((r) => r.sizeBytes === size))
  addRatios(sorted)
  return sorted
}
