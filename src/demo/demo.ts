// `mxgate demo`: three fake backends (mx3 misconfigured), the real mxgate as a child process, a few thousand
// messages through it, mx3 ejected and later re-admitted on screen, and a summary that proves nothing was lost.
// Everything it starts — backends, mxgate, the temp dir — is stopped or removed on success, error and Ctrl-C.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../config/load'
import { FakeBackend, type FaultRule } from '../testing/fake-backend'
import { DEMO_USAGE, type DemoOptions, DemoUsageError, parseDemoArgs } from './args'
import { demoSettingChanges, writeDemoConfig } from './demo-config'
import { Display } from './display'
import { describeHealthEvent, type HealthEvent, type MessageEvent } from './log-events'
import { DemoStartError, MxgateChild, ROOT } from './mxgate-child'
import { type BackendReportRow, formatSummary, progressLine, summarize, summaryLine } from './report'
import { sendTraffic } from './traffic'

const DOMAIN = 'example.com'
const FROM = 'sender@demo.example.net'
const TO = `postmaster@${DOMAIN}`

/**
 * mx3's misconfiguration: a 451 4.3.0 after the data of 60% of its messages. The breaker (config/mxgate.ini: eject
 * when 50% of a backend's attempts fail within 10 s, after at least 5) trips only above one half: at 30% it would
 * almost never trip — that quiet kind of failer is the outlier detector's job, and this becomes the incident's
 * few-percent failer once the detector lands. At 60% the breaker trips within mx3's first dozen messages, every run.
 */
const MX3_FAULT: FaultRule = {
  stage: 'dot',
  action: 'reply',
  reply: '451 4.3.0 Internal configuration error',
  probability: 0.6,
}

/** The whole demo stays under a minute: no message starts after SEND_BUDGET_MS, everything ends by HARD_LIMIT_MS. */
const SEND_BUDGET_MS = 42_000
const HARD_LIMIT_MS = 55_000
const START_TIMEOUT_MS = 15_000

class Interrupted extends Error {
  readonly code = 'EINTERRUPTED'
}

export async function runDemo(argv: string[]): Promise<number> {
  let opts: DemoOptions
  try {
    opts = parseDemoArgs(argv)
  } catch (err) {
    if (!(err instanceof DemoUsageError)) throw err
    process.stderr.write(`mxgate demo: ${err.message}\n\n${DEMO_USAGE}`)
    return 2
  }
  if (opts.help) {
    process.stdout.write(DEMO_USAGE)
    return 0
  }
  return new DemoRun(opts, new Display(process.stdout)).run()
}

class DemoRun {
  private readonly began = Date.now()
  private readonly abort = new AbortController()
  private readonly backends: FakeBackend[]
  private readonly mx3: FakeBackend
  private mxgate: MxgateChild | null = null
  private tmp: string | null = null
  private stoppedByUs = false
  private readonly states = new Map<string, string>()
  private readonly faultsSeen = new Map<string, number>()
  private rerouted = 0
  private mx3FixedAt: number | null = null
  private mx3FaultsBeforeFix = 0

  constructor(
    private readonly opts: DemoOptions,
    private readonly out: Display,
  ) {
    this.backends = ['mx1', 'mx2', 'mx3'].map((id, i) => new FakeBackend({ id, seed: i + 1 }))
    this.mx3 = this.backends[2]!
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals) => this.interrupt(signal)
    const onExit = () => this.mxgate?.killNow()
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    process.on('exit', onExit)
    let code: number
    let last: string | null = null
    try {
      code = await this.main()
    } catch (err) {
      this.out.endProgress()
      if (err instanceof Interrupted) {
        code = 130
        last = 'demo: interrupted; everything it started is stopped'
      } else if (err instanceof DemoStartError) {
        code = 1
        last = `demo: ${err.message}`
      } else {
        throw err
      }
    } finally {
      await this.cleanup()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      process.off('exit', onExit)
    }
    if (last !== null) this.out.line(last)
    return code
  }

  private interrupt(signal: NodeJS.Signals): void {
    if (this.abort.signal.aborted) {
      // A second Ctrl-C: no more waiting for a graceful stop.
      this.mxgate?.killNow()
      process.exit(130)
    }
    this.out.line(`${this.out.stamp()} ${signal}: stopping the demo (again to force)`)
    // On a terminal Ctrl-C reaches mxgate too (same process group); its own exit is then expected.
    this.stoppedByUs = true
    this.abort.abort()
  }

  private checkInterrupted(): void {
    if (this.abort.signal.aborted) throw new Interrupted('interrupted')
  }

  private async main(): Promise<number> {
    const { count, concurrency, rate } = this.opts
    const out = this.out
    out.line(`mxgate demo: 3 fake backends, mxgate on built-in defaults (in-memory state), ${count} messages`)

    await this.mx3.setFaults([MX3_FAULT])
    for (const b of this.backends) await b.start()
    for (const b of this.backends) {
      const what = b === this.mx3 ? `misconfigured: "${MX3_FAULT.reply}" after the data of 60% of messages` : 'healthy'
      out.line(`  ${b.id}  127.0.0.1:${b.port}  ${what}`)
    }

    this.tmp = mkdtempSync(path.join(os.tmpdir(), 'mxgate-demo-'))
    const base = loadConfig({ baseDir: path.join(ROOT, 'config'), env: {} })
    const changes = demoSettingChanges(base.breaker)
    writeDemoConfig(this.tmp, changes)
    out.line('settings the demo changes over config/mxgate.ini, so ejection and re-admission fit in a minute:')
    for (const c of changes) out.line(`  ${c.key.padEnd(26)} ${c.from} → ${c.to}  (${c.why})`)
    const b = base.breaker
    out.line(
      `  unchanged: eject at ${b.errorThresholdPercent}% backend faults within ${b.windowMs / 1000}s` +
        ` (at least ${b.minVolume} attempts); everything else as shipped`,
    )
    out.line(`  temp dir (config, spool): ${this.tmp} (removed at the end)`)
    this.checkInterrupted()

    const mxgate = await MxgateChild.start({
      backends: this.backends.map((be) => ({ id: be.id, host: be.host, port: be.port })),
      domain: DOMAIN,
      configDir: this.tmp,
      spoolDir: path.join(this.tmp, 'spool'),
      startTimeoutMs: START_TIMEOUT_MS,
    })
    this.mxgate = mxgate
    mxgate.on('health', (e) => this.onHealth(e))
    mxgate.on('message', (e) => this.onMessage(e))
    mxgate.on('exit', (code, signal) => {
      if (!this.stoppedByUs) out.line(`${out.stamp()} mxgate exited on its own (code ${code}, signal ${signal})`)
    })
    out.line(`${out.stamp()} mxgate started (pid ${mxgate.pid}), SMTP on 127.0.0.1:${mxgate.port}`)
    this.checkInterrupted()

    const run = randomBytes(4).toString('hex')
    const messageId = (i: number) => `demo-${run}-${i + 1}@demo.example.net`
    out.line(`${out.stamp()} sending ${count} messages to ${TO}, ${concurrency} at a time, at most ${rate}/s`)
    const sendStart = Date.now()
    let accepted = 0
    let failed = 0
    const fixAfter = Math.ceil(count / 2)
    const results = await sendTraffic({
      target: { host: '127.0.0.1', port: mxgate.port },
      count,
      concurrency,
      rate,
      messageId,
      from: FROM,
      to: TO,
      deadline: this.began + SEND_BUDGET_MS,
      signal: this.abort.signal,
      timeoutMs: 10_000,
      onResult: (done, r) => {
        if (r.ok) accepted++
        else failed++
        if (done === fixAfter && count > 1) this.fixMx3(done)
        out.progress(progressLine(done, count, accepted, failed, Date.now() - sendStart))
      },
    })
    const done = results.filter((r) => r !== undefined).length
    out.progress(progressLine(done, count, accepted, failed, Date.now() - sendStart), true)
    out.endProgress()
    if (done < count && !this.abort.signal.aborted) {
      out.line(`${out.stamp()} time limit: ${count - done} messages not sent (this machine is slower than the rate)`)
    }
    this.checkInterrupted()

    const received = () => new Map(this.backends.map((be) => [be.id, be.received.map((m) => m.messageId)]))
    const input = () => ({
      requested: count,
      messageIds: results.map((_, i) => messageId(i)),
      outcomes: results,
      received: received(),
    })
    // Inline relaying means every 250 is already at a backend; a spooled 250 would arrive a little later.
    await this.waitUntil(() => summarize(input()).lost === 0, 5_000)
    // mx3 in probation becomes admitted on a timer: worth the few seconds to show the end of its story.
    if (this.states.get('mx3') === 'probation') {
      out.line(`${out.stamp()} waiting for mx3 to finish probation`)
      await this.waitUntil(() => this.states.get('mx3') === 'admitted', 7_000)
    }
    this.checkInterrupted()

    out.line(`${out.stamp()} stopping mxgate (SIGTERM) and the backends`)
    const unexpectedExit = !mxgate.running
    this.stoppedByUs = true
    const code = await mxgate.stop(5_000)
    if (code !== 0 && !unexpectedExit)
      out.line(`  mxgate exited with code ${code}; its stderr: ${mxgate.stderr().trim()}`)
    await Promise.all(this.backends.map((be) => be.stop()))

    const summary = summarize(input())
    for (const line of formatSummary(summary, this.backendRows(), this.rerouted)) out.line(line)
    out.line(summaryLine(summary))
    if (summary.lost > 0) return 1
    if (unexpectedExit || summary.accepted === 0) {
      out.line('demo: FAILED — mxgate died or accepted nothing; see the lines above')
      return 1
    }
    return 0
  }

  private fixMx3(sent: number): void {
    this.mx3FixedAt = Date.now()
    this.mx3FaultsBeforeFix = this.mx3.counters.faultsInjected
    this.mx3.setFaults([]).catch(() => {})
    this.out.line(`${this.out.stamp()} fixing mx3: it accepts every message from now on (${sent} messages sent)`)
  }

  private onHealth(e: HealthEvent): void {
    this.states.set(e.backend, e.to)
    this.out.line(`${this.out.stamp(e.at)} ${describeHealthEvent(e)}`)
  }

  private onMessage(e: MessageEvent): void {
    let faulted = false
    for (const a of e.attempts) {
      if (a.verdict !== 'backend') continue
      faulted = true
      this.faultsSeen.set(a.backendId, (this.faultsSeen.get(a.backendId) ?? 0) + 1)
    }
    if (faulted && e.outcome === 'relayed') this.rerouted++
  }

  private backendRows(): BackendReportRow[] {
    return this.backends.map((be) => {
      let note = ''
      if (be === this.mx3) {
        const n = this.mx3FixedAt === null ? be.counters.faultsInjected : this.mx3FaultsBeforeFix
        note = `misconfigured: 451'd ${n} messages${this.mx3FixedAt === null ? '' : ', then fixed mid-way'}`
      }
      return {
        id: be.id,
        faultsSeen: this.faultsSeen.get(be.id) ?? 0,
        finalState: this.states.get(be.id) ?? 'admitted',
        note,
      }
    })
  }

  private async waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
    const until = Math.min(Date.now() + ms, this.began + HARD_LIMIT_MS)
    while (!cond() && Date.now() < until && !this.abort.signal.aborted) {
      await new Promise((r) => setTimeout(r, 100))
    }
    return cond()
  }

  private async cleanup(): Promise<void> {
    this.stoppedByUs = true
    await this.mxgate?.stop(5_000)
    await Promise.all(this.backends.map((b) => b.stop()))
    if (this.tmp !== null) rmSync(this.tmp, { recursive: true, force: true })
  }
}
