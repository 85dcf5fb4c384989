// `mxgate demo`: the incident itself. Four fake backends — mx3 quietly failing a few percent of messages, mx4 going
// down hard part-way — the real mxgate as a child process, a few thousand messages through it, the detector's and
// the breaker's ejections with their evidence as they happen, mx3 fixed and re-admitted, and a summary that proves
// nothing was lost. The script (who fails how, and when) is incident.ts; how events read is narration.ts.
// Everything it starts — backends, mxgate, the temp dir — is stopped or removed on success, error and Ctrl-C.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../config/load'
import type { MxgateConfig } from '../config/schema'
import { makeCert } from '../testing/certs'
import { FakeBackend } from '../testing/fake-backend'
import { DEMO_USAGE, type DemoOptions, DemoUsageError, parseDemoArgs } from './args'
import { demoSettingChanges, unchangedSettings, writeDemoConfig } from './demo-config'
import { Display } from './display'
import {
  BACKEND_IDS,
  BACKEND_SEEDS,
  type BackendId,
  IncidentScript,
  type IncidentStep,
  MX3_FAULT,
  MX3_FAULT_RATE,
  MX4_DOWN,
} from './incident'
import type { DetectorNotice, HealthEvent, MessageEvent } from './log-events'
import { DemoStartError, MxgateChild, ROOT } from './mxgate-child'
import { type BreakerView, describeHealthEvent, ejectionCause } from './narration'
import { type BackendReportRow, formatSummary, progressLine, summarize, summaryLine } from './report'
import { sendTraffic } from './traffic'

const DOMAIN = 'example.com'
const FROM = 'sender@demo.example.net'
const TO = `postmaster@${DOMAIN}`

/** The whole demo stays about a minute: no message starts after SEND_BUDGET_MS, everything ends by HARD_LIMIT_MS. */
const SEND_BUDGET_MS = 48_000
const HARD_LIMIT_MS = 58_000
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
  private readonly backends: Map<BackendId, FakeBackend>
  private readonly script: IncidentScript
  private mxgate: MxgateChild | null = null
  private tmp: string | null = null
  private stoppedByUs = false
  private readonly states = new Map<string, string>()
  private readonly faultsSeen = new Map<string, number>()
  private rerouted = 0
  private spooled = 0
  private done = 0
  private mx3Caught = false
  private mx3FixedAt: number | null = null
  private mx3FaultsBeforeFix = 0
  private mx3MessagesBeforeFix = 0
  private mx4DownAt: number | null = null
  private mx4Ejected = false
  /** How many backends the detector may have out at once (`detector.budget` of the four). */
  private detectorBudget = 1
  /** mx3's received messages when its probation began (it counts good messages from there). */
  private mx3ProbationFrom: number | null = null
  private breakerView: BreakerView | undefined

  constructor(
    private readonly opts: DemoOptions,
    private readonly out: Display,
  ) {
    this.backends = new Map(BACKEND_IDS.map((id) => [id, new FakeBackend({ id, seed: BACKEND_SEEDS[id] })]))
    this.script = new IncidentScript(opts.count)
  }

  private backend(id: BackendId): FakeBackend {
    return this.backends.get(id) as FakeBackend
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
    out.line(
      `mxgate demo: ${BACKEND_IDS.length} fake backends, mxgate on built-in defaults (in-memory state), ${count} messages`,
    )

    await this.backend('mx3').setFaults([MX3_FAULT])
    for (const b of this.backends.values()) await b.start()
    const roles: Record<BackendId, string> = {
      mx1: 'healthy',
      mx2: 'healthy',
      mx3:
        `quietly misconfigured: "${MX3_FAULT.reply}" after the data of ${MX3_FAULT_RATE * 100}% of its messages;` +
        ' passes every health check',
      mx4: 'healthy, until it goes down hard part-way (refuses connections)',
    }
    for (const [id, b] of this.backends) out.line(`  ${id}  127.0.0.1:${b.port}  ${roles[id]}`)

    this.tmp = mkdtempSync(path.join(os.tmpdir(), 'mxgate-demo-'))
    const base = loadConfig({ baseDir: path.join(ROOT, 'config'), env: {} })
    const changes = demoSettingChanges(base)
    this.breakerView = { thresholdPercent: base.breaker.errorThresholdPercent, windowMs: base.breaker.windowMs }
    this.detectorBudget = Math.max(1, Math.floor(BACKEND_IDS.length * base.detector.budgetShare))
    writeDemoConfig(this.tmp, changes)
    out.line('settings the demo changes over config/mxgate.ini: clocks only, so the story fits in a minute:')
    for (const c of changes) out.line(`  ${c.key.padEnd(26)} ${c.from} → ${c.to}  (${c.why})`)
    for (const line of unchangedSettings(base, BACKEND_IDS.length)) out.line(`  ${line}`)
    out.line(`  temp dir (config, spool): ${this.tmp} (removed at the end)`)
    // Inbound STARTTLS as in production, with a certificate made for this run (never one shipped in the repository).
    let tls: { certFile: string; keyFile: string } | null = null
    try {
      tls = makeCert(this.tmp, 'demo-tls', 'mxgate.localdomain')
      out.line(
        '  inbound STARTTLS: offered, with a throwaway self-signed certificate made for this run ([tls] cert, key)',
      )
    } catch (err) {
      out.line(
        `  inbound STARTTLS: not offered (no certificate could be made: ${(err as Error).message.split('\n')[0]})`,
      )
    }
    this.checkInterrupted()

    const mxgate = await MxgateChild.start({
      backends: [...this.backends.values()].map((be) => ({ id: be.id, host: be.host, port: be.port })),
      domain: DOMAIN,
      configDir: this.tmp,
      spoolDir: path.join(this.tmp, 'spool'),
      startTimeoutMs: START_TIMEOUT_MS,
      tls,
    })
    this.mxgate = mxgate
    mxgate.on('health', (e) => this.onHealth(e))
    mxgate.on('detector', (e) => this.onDetector(e))
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
        this.done = done
        this.advance()
        out.progress(progressLine(done, count, accepted, failed, Date.now() - sendStart))
      },
    })
    const done = results.filter((r) => r !== undefined).length
    out.progress(progressLine(done, count, accepted, failed, Date.now() - sendStart), true)
    out.endProgress()
    if (done < count && !this.abort.signal.aborted) {
      out.line(`${out.stamp()} time limit: ${count - done} messages not sent (this machine is slower than the rate)`)
    }
    if (!this.mx3Caught) {
      out.line(
        `${out.stamp()} the detector did not catch mx3 within ${done} messages: it needs roughly 150–250 of mx3's own` +
          ` (about 1,000 in all); try a larger --count`,
      )
    }
    this.checkInterrupted()

    const received = () => new Map([...this.backends].map(([id, be]) => [id, be.received.map((m) => m.messageId)]))
    const input = () => ({
      requested: count,
      messageIds: results.map((_, i) => messageId(i)),
      outcomes: results,
      received: received(),
    })
    // Inline relaying means every 250 is already at a backend; a spooled one waits for the spool's next retry, so
    // the demo asks for it now, as an operator would (`mxgate spool flush`).
    if (!(await this.waitUntil(() => summarize(input()).lost === 0, 2_000)) && this.spooled > 0) {
      out.line(`${out.stamp()} ${this.spooled} message(s) in mxgate's spool: flushing it (POST /api/spool/flush)`)
      const status = await mxgate.adminPost('/api/spool/flush').catch((err: Error) => err.message)
      if (status !== 200) out.line(`  the flush was refused: ${status}`)
      await this.waitUntil(() => summarize(input()).lost === 0, 10_000)
    }
    await this.finishMx3Probation(base)
    this.checkInterrupted()

    out.line(`${out.stamp()} stopping mxgate (SIGTERM) and the backends`)
    const unexpectedExit = !mxgate.running
    this.stoppedByUs = true
    const code = await mxgate.stop(5_000)
    if (code !== 0 && !unexpectedExit)
      out.line(`  mxgate exited with code ${code}; its stderr: ${mxgate.stderr().trim()}`)
    await Promise.all([...this.backends.values()].map((be) => be.stop()))

    const summary = summarize(input())
    const extra = { rerouted: this.rerouted, spooled: this.spooled }
    for (const line of formatSummary(summary, this.backendRows(), extra)) out.line(line)
    out.line(summaryLine(summary))
    if (summary.lost > 0) return 1
    if (unexpectedExit || summary.accepted === 0) {
      out.line('demo: FAILED — mxgate died or accepted nothing; see the lines above')
      return 1
    }
    return 0
  }

  /** Runs the incident's steps that have come due. */
  private advance(): void {
    const progress = { done: this.done, mx3CaughtByDetector: this.mx3Caught, mx4Ejected: this.mx4Ejected }
    for (const step of this.script.due(progress)) this.apply(step)
  }

  private apply(step: IncidentStep): void {
    const out = this.out
    if (step === 'mx4-down') {
      this.mx4DownAt = Date.now()
      this.backend('mx4')
        .setFaults(MX4_DOWN)
        .catch(() => {})
      out.line(
        `${out.stamp()} mx4 goes down hard: it refuses connections and cuts its open sessions (the detector's` +
          ` budget, ${this.detectorBudget} of ${BACKEND_IDS.length} backends, is spent on mx3: this one is the breaker's)`,
      )
      return
    }
    const mx3 = this.backend('mx3')
    this.mx3FixedAt = Date.now()
    this.mx3FaultsBeforeFix = mx3.counters.faultsInjected
    this.mx3MessagesBeforeFix = mx3.counters.faultsInjected + mx3.received.length
    mx3.setFaults([]).catch(() => {})
    const out3 = ['ejected', 'probing', 'trial'].includes(this.states.get('mx3') ?? '')
    out.line(
      `${out.stamp()} fixing mx3${out3 ? ' while it is out' : ''}: it accepts every message from now on` +
        ` (${this.done} messages sent)`,
    )
  }

  /**
   * Probation ends after `probation_messages` good messages and then `slow_start`: when mx3 has its messages, the
   * ramp is a few seconds worth showing; otherwise the demo says how far it got.
   */
  private async finishMx3Probation(base: MxgateConfig): Promise<void> {
    if (this.states.get('mx3') !== 'probation' || this.mx3ProbationFrom === null) return
    const good = this.backend('mx3').received.length - this.mx3ProbationFrom
    const need = base.breaker.probationMessages
    if (good >= need) {
      this.out.line(`${this.out.stamp()} waiting for mx3 to finish probation (its ${need} good messages are in)`)
      await this.waitUntil(() => this.states.get('mx3') === 'admitted', 7_000)
      return
    }
    this.out.line(
      `${this.out.stamp()} mx3 stays in probation: ${good} of its ${need} good messages so far at` +
        ` ${Math.round(base.breaker.probationShare * 100)}% of its weight, then a ramp`,
    )
  }

  private onHealth(e: HealthEvent): void {
    this.states.set(e.backend, e.to)
    const [head = '', ...detail] = describeHealthEvent(e, this.breakerView)
    const stamp = this.out.stamp(e.at)
    this.out.line(`${stamp} ${head}`)
    for (const line of detail) this.out.line(`${' '.repeat(stamp.length)}     ${line}`)
    if (e.backend === 'mx3' && e.to === 'probation') this.mx3ProbationFrom = this.backend('mx3').received.length
    if (e.to !== 'ejected') return
    if (e.backend === 'mx3' && ejectionCause(e) === 'detector') this.mx3Caught = true
    if (e.backend === 'mx4') this.mx4Ejected = true
    this.advance()
  }

  private onDetector(e: DetectorNotice): void {
    // Warnings only: an alarm held back, the budget reached, the pool degraded. (Its info "budget free again" comes
    // as soon as nothing is held back, e.g. once mx4's breaker has it, while mx3 still holds the budget.)
    if (e.level >= 40) this.out.line(`${this.out.stamp(e.at)} ${e.text}`)
  }

  private onMessage(e: MessageEvent): void {
    let faulted = false
    for (const a of e.attempts) {
      if (a.verdict !== 'backend') continue
      faulted = true
      this.faultsSeen.set(a.backendId, (this.faultsSeen.get(a.backendId) ?? 0) + 1)
    }
    if (faulted && e.outcome === 'relayed') this.rerouted++
    if (e.outcome === 'spooled') this.spooled++
  }

  private backendRows(): BackendReportRow[] {
    return [...this.backends].map(([id, be]) => {
      let note = ''
      if (id === 'mx3') {
        const fixed = this.mx3FixedAt !== null
        const faults = fixed ? this.mx3FaultsBeforeFix : be.counters.faultsInjected
        const of = fixed ? this.mx3MessagesBeforeFix : be.counters.faultsInjected + be.received.length
        note = `quiet failer: 451'd ${faults} of ${of} messages${fixed ? ', then fixed' : ''}`
      } else if (id === 'mx4' && this.mx4DownAt !== null) {
        note = `down hard from ${this.out.stamp(this.mx4DownAt)} on`
      }
      return {
        id,
        faultsSeen: this.faultsSeen.get(id) ?? 0,
        finalState: this.states.get(id) ?? 'admitted',
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
    await Promise.all([...this.backends.values()].map((b) => b.stop()))
    if (this.tmp !== null) rmSync(this.tmp, { recursive: true, force: true })
  }
}
