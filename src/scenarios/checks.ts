// Judges one run against its row's "must show". Pure: a RunRecord in, one result per check out.
import type { Check, CheckResult, Ejection, RunRecord, Scenario } from './types'

const fmt = (n: number) => n.toLocaleString('en-US')

/** The series key a metric check's peak is stored under in RunRecord.metrics. */
export function metricKey(c: { name: string; labels?: Record<string, string> }): string {
  const labels = Object.entries(c.labels ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`)
  return labels.length === 0 ? c.name : `${c.name}{${labels.join(',')}}`
}

/** Ejections of backends that are not culprits of this scenario. */
export function falseEjections(scenario: Scenario, run: RunRecord): Ejection[] {
  const culprits = new Set(scenario.backends.filter((b) => b.culprit).map((b) => b.id))
  return run.ejections.filter((e) => !culprits.has(e.backend))
}

export function firstEjection(run: RunRecord, backend: string): Ejection | undefined {
  return run.ejections.find((e) => e.backend === backend)
}

function judge(check: Check, scenario: Scenario, run: RunRecord): CheckResult {
  const result = (pass: boolean, detail: string): CheckResult => ({ check, pass, detail })
  switch (check.kind) {
    case 'ejectedWithin': {
      const e = firstEjection(run, check.backend)
      if (!e) return result(false, `${check.backend} not ejected in ${fmt(run.ledger.sent)} messages`)
      const n = check.count === 'own' ? e.ownMessages : e.atMessage
      const what = check.count === 'own' ? 'of its own messages' : 'messages'
      return result(
        n <= check.messages,
        `${check.backend} ejected after ${fmt(n)} ${what} (bound ${fmt(check.messages)})`,
      )
    }
    case 'noFalseEjections': {
      const wrong = falseEjections(scenario, run)
      const ids = [...new Set(wrong.map((e) => e.backend))].join(', ')
      return result(wrong.length === 0, wrong.length === 0 ? 'no false ejections' : `falsely ejected: ${ids}`)
    }
    case 'maxEjections': {
      const re = check.reason === undefined ? null : new RegExp(check.reason, 'i')
      const n = run.ejections.filter((e) => re === null || re.test(e.reason ?? '')).length
      const which = re === null ? 'ejections' : `ejections with a reason matching /${check.reason}/`
      return result(n <= check.max, `${n} ${which} (at most ${check.max})`)
    }
    case 'maxEjectedAtOnce':
      return result(run.maxOut <= check.max, `at most ${run.maxOut} out at once (limit ${check.max})`)
    case 'ejectionsGrow': {
      const spans = run.ejections
        .filter((e) => e.backend === check.backend && e.until !== null)
        .map((e) => (e.until as number) - e.since)
      const secs = spans.map((ms) => `${Math.round(ms / 100) / 10}s`).join(', ')
      if (spans.length < 2) return result(false, `${spans.length} ejection(s) of ${check.backend}: nothing to compare`)
      // 5% slack: `until` and `since` are stamped a few ms apart on a busy node.
      const grows = spans.every((s, i) => i === 0 || s >= (spans[i - 1] as number) * 0.95)
      const first = spans[0] as number
      const last = spans[spans.length - 1] as number
      return result(grows && last > first * 1.05, `ejection times ${secs}`)
    }
    case 'ejectedInProbation': {
      const restored = run.actions.filter((a) => a.op === 'restore' && a.backend === check.backend).at(-1)
      if (!restored) return result(false, `${check.backend} was never restored, so never in probation`)
      const e = run.ejections.find((x) => x.backend === check.backend && x.since >= restored.at)
      if (!e) return result(false, `${check.backend} not ejected after its restore`)
      const p = run.probation[check.backend]
      const share = p && p.all > 0 ? p.own / p.all : 0
      const pct = `${Math.round(share * 1000) / 10}%`
      const inProbation = e.stateBefore === 'probation'
      return result(
        inProbation && share <= check.maxShare,
        `ejected from ${e.stateBefore ?? 'unknown'} after ${p?.own ?? 0} of ${p?.all ?? 0} messages (${pct}, at most ${Math.round(check.maxShare * 1000) / 10}%)`,
      )
    }
    case 'lost':
      return result(run.ledger.lost <= check.max, `${run.ledger.lost} lost`)
    case 'bounced':
      return result(
        run.ledger.bounced <= check.max,
        `${run.ledger.bounced} bounced (${run.ledger.rejected} 5xx, ${run.ledger.dsns} DSNs)`,
      )
    case 'metric': {
      const v = run.metrics[metricKey(check)]
      // A labelled counter has no series until its first increment: for an upper bound alone, absent means 0.
      if (v === undefined && check.min === undefined)
        return result(true, `${check.what}: ${metricKey(check)} never exported (0)`)
      if (v === undefined) return result(false, `${check.what}: ${metricKey(check)} never exported`)
      const ok = (check.min === undefined || v >= check.min) && (check.max === undefined || v <= check.max)
      return result(ok, `${check.what}: ${metricKey(check)} peaked at ${v}`)
    }
    case 'log': {
      const n = run.logMatches[check.match] ?? 0
      return result(n >= check.min, `${check.what}: ${n} log lines match /${check.match}/`)
    }
  }
}

export function judgeRun(scenario: Scenario, run: RunRecord): CheckResult[] {
  return scenario.checks.map((c) => judge(c, scenario, run))
}
