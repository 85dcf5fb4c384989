// `mxgate status ID`: one backend in full, with the detector's evidence an operator can check by hand.
import type { BackendView } from '../admin/types'
import { formatAgo } from './duration'
import { whyText } from './table'
import { safeText } from './terminal-text'

const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`)

export function backendDetail(node: string, b: BackendView, now: number): string {
  const lines = [
    // Everything the node sends is escaped: a backend's reply in `why` must not drive the operator's terminal.
    `backend ${safeText(b.id)} (${safeText(b.address)}, weight ${b.weight})${node === '' ? '' : ` on node ${safeText(node)}`}`,
    `  state       ${b.state} since ${formatAgo(b.since, now)}`,
    `  why         ${safeText(whyText(b, now))}`,
    `  in flight   ${b.inFlight}; success ${pct(b.successRatio)} over 5 min here`,
  ]
  const d = b.detector
  if (d) {
    if (d.ejectedBy !== null) lines.push(`  ejected by  ${d.ejectedBy}`)
    const e = d.evidence
    if (e !== null) {
      const what =
        e.signal === 'fault' ? 'faults' : e.signal === 'canary' ? 'canaries lost after 250' : 'permanent refusals'
      const unit = e.signal === 'canary' ? 'canaries' : 'messages'
      lines.push(
        `  evidence    ${e.faults} ${what} in ${e.messages} ${unit} (window rate ${pct(e.rate)}) vs the rest of the pool's ${pct(e.poolRate)}`,
        `              CUSUM ${e.statistic.toFixed(2)} ≥ threshold ${e.threshold}${
          e.firstFaultAt === null ? '' : `; first fault ${formatAgo(e.firstFaultAt, now)}`
        }`,
      )
    }
    lines.push(
      `  detector    ${d.mode}; statistic fault ${d.statistic.fault.toFixed(2)}, refusal ${d.statistic.refusal.toFixed(2)} of ${d.threshold}`,
      `  rates       faults ${pct(d.faultRatio)} (rest of pool ${pct(d.poolFaultRatio)}), permanent refusals ${pct(d.refusalRatio)}; pooled over nodes`,
    )
    const flags = [
      d.suspect ? 'suspect (its 5xx are confirmed elsewhere)' : null,
      d.wouldEject ? 'would eject (held back)' : null,
      d.budgetFrozen ? 'ejection budget reached' : null,
      d.poolDegraded ? 'pool degraded' : null,
    ].filter((f) => f !== null)
    if (flags.length > 0) lines.push(`  flags       ${flags.join('; ')}`)
  }
  const c = b.canary
  if (c) {
    const rtt = c.lastRoundTripMs === null ? 'none back yet' : `last round trip ${c.lastRoundTripMs}ms`
    lines.push(
      `  canaries    ${c.sent} sent, ${c.returned} returned, ${c.lost} lost after 250, ${c.unjudged ?? 0} unjudged (state store unreachable), ${c.failed} not accepted, ${c.pending} on their way; ${rtt}`,
      `              loss statistic ${c.statistic.toFixed(2)}; lost ${pct(c.lossRate)} of its last canaries`,
    )
  }
  return `${lines.join('\n')}\n`
}
