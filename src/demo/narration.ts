// How the demo's events read on screen: a backend's state change with the evidence behind an ejection, spelled out
// for an audience. Pure: an event in, lines out (the first is the event, the rest indented detail).
import type { DetectorEvidence, HealthEvent } from './log-events'

const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`

function formatSeconds(ms: number): string {
  const s = Math.max(0, ms) / 1000
  return s < 10 ? `${Number(s.toFixed(1))}s` : `${Math.round(s)}s`
}

/** Who took the backend out, read from the reason the health log line gives. */
export function ejectionCause(e: HealthEvent): 'detector' | 'probation' | 'breaker' | 'probe' | 'trial' | 'other' {
  const reason = e.reason ?? ''
  if (reason.startsWith('detector:')) return 'detector'
  if (reason.startsWith('probation:')) return 'probation'
  if (e.from === 'probing') return 'probe'
  if (e.from === 'trial') return 'trial'
  if (e.from === 'admitted' || e.from === 'probation')
    return /^\d+ of \d+ attempts failed/.test(reason) ? 'breaker' : 'other'
  return 'other'
}

/** The detector's evidence as two lines: the counts and rates, then the statistic against its threshold. */
export function describeEvidence(ev: DetectorEvidence, at: number): string[] {
  const what = ev.signal === 'fault' ? 'faults' : 'permanent refusals'
  const pool = ev.poolRate === null ? 'n/a (too little traffic)' : pct(ev.poolRate)
  const since = ev.firstFaultAt === null ? '' : `; the first of these ${formatSeconds(at - ev.firstFaultAt)} ago`
  return [
    `evidence: ${ev.faults} ${what} in ${ev.messages} of its messages (${pct(ev.faults / Math.max(1, ev.messages))});` +
      ` its rate over the window ${pct(ev.rate)} vs the rest of the pool's ${pool}`,
    `CUSUM statistic ${ev.statistic.toFixed(1)} ≥ threshold ${ev.threshold}${since}`,
  ]
}

/** The breaker settings a detector ejection is set against: the window its counts are over, the share that ejects. */
export interface BreakerView {
  thresholdPercent: number
  windowMs: number
}

/**
 * A state change, e.g. "mx4 admitted → ejected for 10s by its circuit breaker: 120 of 230 attempts failed (52%)
 * within 10s; last: …", or for the detector the head line and its evidence below it.
 */
export function describeHealthEvent(e: HealthEvent, breaker?: BreakerView): string[] {
  const forHowLong = e.to === 'ejected' && e.until !== null ? ` for ${formatSeconds(e.until - e.at)}` : ''
  const head = `${e.backend} ${e.from} → ${e.to}${forHowLong}`
  if (e.to !== 'ejected') return [e.reason === null ? head : `${head}: ${e.reason}`]
  const cause = ejectionCause(e)
  if ((cause === 'detector' || cause === 'probation') && e.evidence !== null) {
    const who = cause === 'detector' ? 'by the outlier detector' : 'by the outlier detector, in probation'
    const lines = [`${head} ${who}`, ...describeEvidence(e.evidence, e.at)]
    // What the breaker made of the same backend: the reason the detector exists.
    if (breaker && e.window && e.window.attempts > 0) {
      const share = Math.round((100 * e.window.faults) / e.window.attempts)
      lines.push(
        `its breaker meanwhile: ${e.window.faults} of ${e.window.attempts} attempts failed (${share}%) within` +
          ` ${breaker.windowMs / 1000}s; it trips at ${breaker.thresholdPercent}%`,
      )
    }
    return lines
  }
  if (cause === 'breaker') return [`${head} by its circuit breaker: ${e.reason}`]
  return [e.reason === null ? head : `${head}: ${e.reason}`]
}
