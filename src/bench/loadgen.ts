// The load generator: N concurrent SMTP sessions, one new TCP connection per message, per-message latency.
// Cheap per message on purpose (prebuilt buffers, pipelined MAIL/RCPT/DATA, one write per burst, NODELAY) so that
// on a 2-core machine it takes as little CPU as it can from the server under test.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { parseLoadArgs, sizeLabel } from './args'
import { BENCH_TO, buildCommands, buildMessageWire, type CommandBuffers } from './message'
import { percentile } from './stats'

export interface LoadParams {
  host: string
  port: number
  concurrency: number
  /** Sessions to start at most. */
  count: number
  /** No session starts after this; sessions in flight finish (bounded by sessionTimeoutMs). */
  timeLimitMs: number
  messageBytes: number
  /** One session's bound from connect to close; past it the session counts as an error. Default 30 s. */
  sessionTimeoutMs?: number
  /**
   * A recipient never used before for every message (`cold-<run>-<n>@bench.example`), so a relay that verifies
   * recipients can never answer from its cache. Default: the same recipient for every message.
   */
  uniqueRecipients?: boolean
}

export interface LoadResult {
  sent: number
  /** 2xx after the final dot. */
  ok: number
  /** 4xx at any stage (the session ends there). */
  temp: number
  /** 5xx at any stage. */
  perm: number
  /** Connection refused/reset/closed early, protocol surprises, session timeouts. */
  errors: number
  /** From the first connect to the last final reply. */
  elapsedMs: number
  /** Connect → reply to the final dot, for the messages that got 2xx; ascending. */
  latenciesMs: Float64Array
  msgsPerSec: number
  /** CPU the load generator itself used (user + system) per started session, in ms. */
  genCpuMsPerMsg: number
  /** The first few non-2xx replies and errors, to say why a run went wrong. */
  samples: string[]
}

enum Stage {
  Banner,
  Ehlo,
  Mail,
  Rcpt,
  Data,
  Dot,
  Quit,
  Done,
}

const MAX_SAMPLES = 5

/** Runs one bounded load against host:port and resolves when every session it started has ended. */
export function runLoad(params: LoadParams): Promise<LoadResult> {
  const { host, port, concurrency, count, timeLimitMs, messageBytes } = params
  const sessionTimeoutMs = params.sessionTimeoutMs ?? 30_000
  const cmd = buildCommands()
  const run = params.uniqueRecipients === true ? randomBytes(4).toString('hex') : null
  const wire = buildMessageWire(messageBytes)
  const latencies = new Float64Array(count)
  const samples: string[] = []
  const tally = { ok: 0, temp: 0, perm: 0, errors: 0 }
  let started = 0
  let active = 0
  let lastReplyAt = 0
  let finished = false
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const deadline = t0 + timeLimitMs

  const sample = (what: string): void => {
    if (samples.length < MAX_SAMPLES) samples.push(what)
  }

  return new Promise<LoadResult>((resolve) => {
    const finish = (): void => {
      const cpu = process.cpuUsage(cpu0)
      const elapsedMs = (lastReplyAt || performance.now()) - t0
      const sorted = latencies.slice(0, tally.ok).sort()
      resolve({
        sent: started,
        ...tally,
        elapsedMs,
        latenciesMs: sorted,
        msgsPerSec: elapsedMs > 0 ? (tally.ok * 1000) / elapsedMs : 0,
        genCpuMsPerMsg: started > 0 ? (cpu.user + cpu.system) / 1000 / started : 0,
        samples,
      })
    }

    const next = (): void => {
      while (active < concurrency && started < count && performance.now() < deadline) {
        started++
        active++
        session(
          host,
          port,
          run === null ? cmd : buildCommands(`cold-${run}-${started}@${BENCH_TO.split('@')[1]}`),
          wire,
          sessionTimeoutMs,
          (outcome, latencyMs, detail) => {
            lastReplyAt = performance.now()
            if (outcome === 'ok') latencies[tally.ok++] = latencyMs
            else {
              tally[outcome]++
              sample(detail)
            }
          },
          () => {
            active--
            next()
          },
        )
      }
      if (active === 0 && !finished) {
        finished = true
        finish()
      }
    }
    next()
  })
}

type Outcome = 'ok' | 'temp' | 'perm' | 'errors'

/**
 * One SMTP session delivering one message. `report` is called exactly once with the message's outcome (at the
 * reply to the dot, so latency excludes QUIT); `closed` once when the socket is gone.
 */
function session(
  host: string,
  port: number,
  cmd: CommandBuffers,
  wire: Buffer,
  timeoutMs: number,
  report: (outcome: Outcome, latencyMs: number, detail: string) => void,
  closed: () => void,
): void {
  const start = performance.now()
  const socket = net.connect({ host, port, noDelay: true })
  let stage = Stage.Banner
  let pending = ''
  let pipelining = false
  let reported = false
  // Replies still owed to the pipelined MAIL/RCPT/DATA group.
  let groupLeft = 0

  const done = (outcome: Outcome, detail: string): void => {
    if (reported) return
    reported = true
    report(outcome, performance.now() - start, detail)
  }
  const quit = (): void => {
    stage = Stage.Quit
    // The server closes after 221, so the TIME_WAIT lands on its side, not on our ephemeral ports.
    socket.write(cmd.quit)
  }
  const refuse = (code: number, line: string): void => {
    done(code >= 500 ? 'perm' : 'temp', `${stageName(stage)}: ${line}`)
    quit()
  }
  const timer = setTimeout(() => {
    done('errors', `${stageName(stage)}: no end after ${timeoutMs} ms`)
    socket.destroy()
  }, timeoutMs)

  const onReply = (code: number, line: string): void => {
    switch (stage) {
      case Stage.Banner:
        if (code !== 220) {
          refuse(code, line)
          return
        }
        stage = Stage.Ehlo
        socket.write(cmd.ehlo)
        return
      case Stage.Ehlo:
        if (code !== 250) {
          refuse(code, line)
          return
        }
        stage = Stage.Mail
        if (pipelining) {
          groupLeft = 3
          socket.write(cmd.pipelined)
        } else socket.write(cmd.mail)
        return
      case Stage.Mail:
      case Stage.Rcpt:
      case Stage.Data: {
        const want = stage === Stage.Data ? 354 : 250
        if (code !== want) {
          // With pipelining the rest of the group still answers; ignore those replies and QUIT after them.
          if (groupLeft > 0) groupLeft = 0
          refuse(code, line)
          return
        }
        if (groupLeft > 0) groupLeft--
        if (stage === Stage.Mail) {
          stage = Stage.Rcpt
          if (!pipelining) socket.write(cmd.rcpt)
        } else if (stage === Stage.Rcpt) {
          stage = Stage.Data
          if (!pipelining) socket.write(cmd.data)
        } else {
          stage = Stage.Dot
          socket.write(wire)
        }
        return
      }
      case Stage.Dot:
        if (code >= 200 && code < 300) done('ok', line)
        else done(code >= 500 ? 'perm' : 'temp', `dot: ${line}`)
        quit()
        return
      default:
        // Replies after QUIT (221, or the rest of a refused pipelined group) need nothing.
        return
    }
  }

  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1')
    let eol = pending.indexOf('\n')
    while (eol !== -1) {
      const line = pending.charCodeAt(eol - 1) === 13 ? pending.slice(0, eol - 1) : pending.slice(0, eol)
      pending = pending.slice(eol + 1)
      if (line.length >= 4 && line.charCodeAt(3) === 45 /* '-' */) {
        if (stage === Stage.Ehlo && line.slice(4).toUpperCase() === 'PIPELINING') pipelining = true
      } else {
        const code = Number.parseInt(line.slice(0, 3), 10)
        if (Number.isNaN(code)) {
          done('errors', `${stageName(stage)}: not an SMTP reply: ${line.slice(0, 80)}`)
          socket.destroy()
          return
        }
        if (stage === Stage.Ehlo && line.slice(4).toUpperCase() === 'PIPELINING') pipelining = true
        onReply(code, line)
      }
      eol = pending.indexOf('\n')
    }
  })
  socket.on('error', (err: NodeJS.ErrnoException) => {
    done('errors', `${stageName(stage)}: ${err.code ?? err.message}`)
  })
  socket.on('close', () => {
    clearTimeout(timer)
    done('errors', `${stageName(stage)}: connection closed early`)
    stage = Stage.Done
    closed()
  })
}

function stageName(stage: Stage): string {
  return ['banner', 'ehlo', 'mail', 'rcpt', 'data', 'dot', 'quit', 'done'][stage] ?? 'unknown'
}

/** One-line human summary of a load result. */
export function describeLoad(r: LoadResult): string {
  const p = (q: number): string => (r.latenciesMs.length === 0 ? '-' : percentile(r.latenciesMs, q).toFixed(1))
  return (
    `sent ${r.sent} ok ${r.ok} 4xx ${r.temp} 5xx ${r.perm} errors ${r.errors} in ${(r.elapsedMs / 1000).toFixed(2)} s: ` +
    `${r.msgsPerSec.toFixed(0)} msgs/s, p50 ${p(50)} ms, p99 ${p(99)} ms, generator CPU ${r.genCpuMsPerMsg.toFixed(3)} ms/msg` +
    (r.samples.length > 0 ? `\n  first problems: ${r.samples.join(' | ')}` : '')
  )
}

async function main(): Promise<void> {
  const opts = parseLoadArgs(process.argv.slice(2))
  for (const messageBytes of opts.sizes) {
    const r = await runLoad({ ...opts, messageBytes })
    process.stdout.write(`${sizeLabel(messageBytes)}: ${describeLoad(r)}\n`)
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`loadgen: ${(err as Error).message}\n`)
    process.exitCode = 1
  })
}
