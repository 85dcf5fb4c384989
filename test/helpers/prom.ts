// Reads a /metrics page with a real Prometheus text-format parser (parse-prometheus-text-format), so tests assert on
// exact values by name, type and labels rather than on regexes over the text.
import parse from 'parse-prometheus-text-format'

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'

export interface Series {
  labels: Record<string, string>
  /** Counter and gauge value; a histogram's count. */
  value: number
  /** Histogram buckets by upper bound ("0.005", …, "+Inf"), cumulative. */
  buckets?: Record<string, number>
  sum?: number
}

/**
 * parse-prometheus-text-format 1.1 merges every series of a labelled histogram into one and drops their counts and
 * sums. So a histogram's TYPE line is kept aside before parsing: its _bucket, _sum and _count samples then come out
 * as untyped families with their labels (parsed by the library all the same) and are regrouped here by labels.
 */
function histogramsAside(text: string): { text: string; histograms: Set<string> } {
  const histograms = new Set<string>()
  const kept = text.split('\n').filter((line) => {
    const m = /^# TYPE (\S+) histogram$/.exec(line)
    if (m) histograms.add(m[1]!)
    return m === null
  })
  return { text: kept.join('\n'), histograms }
}

const key = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).sort())

export class Metrics {
  private readonly families = new Map<string, { type: MetricType; series: Series[] }>()

  constructor(page: string) {
    const { text, histograms } = histogramsAside(page)
    const parsed = parse(text)
    for (const f of parsed) {
      if (histograms.has(f.name) || [...histograms].some((h) => f.name.startsWith(`${h}_`))) continue
      if (this.families.has(f.name)) throw new Error(`metric ${f.name} appears twice on the page`)
      const series = f.metrics.map((m): Series => ({ labels: m.labels ?? {}, value: Number(m.value) }))
      this.families.set(f.name, { type: f.type.toLowerCase() as MetricType, series })
    }
    for (const h of histograms) {
      const byLabels = new Map<string, Series>()
      const one = (labels: Record<string, string>): Series => {
        const k = key(labels)
        let s = byLabels.get(k)
        if (!s) {
          s = { labels, value: 0, buckets: {}, sum: 0 }
          byLabels.set(k, s)
        }
        return s
      }
      for (const f of parsed) {
        for (const m of f.metrics) {
          const { le, ...labels } = m.labels ?? {}
          const v = Number(m.value)
          if (f.name === `${h}_bucket` && le !== undefined) one(labels).buckets![le] = v
          else if (f.name === `${h}_sum`) one(labels).sum = v
          else if (f.name === `${h}_count`) one(labels).value = v
        }
      }
      this.families.set(h, { type: 'histogram', series: [...byLabels.values()] })
    }
  }

  names(): string[] {
    return [...this.families.keys()]
  }

  type(name: string): MetricType | undefined {
    return this.families.get(name)?.type
  }

  /** Every series of the metric whose labels include `match`; throws when the metric is absent. */
  series(name: string, match: Record<string, string> = {}): Series[] {
    const f = this.families.get(name)
    if (!f) throw new Error(`no metric ${name} on the page; it has: ${this.names().join(', ')}`)
    return f.series.filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
  }

  /** The sum of the values of the series whose labels include `match` (0 when none does). */
  value(name: string, match: Record<string, string> = {}): number {
    return this.series(name, match).reduce((n, s) => n + s.value, 0)
  }

  /** { labelValue: value } over one label, for series including `match`, zero series left out. */
  by(name: string, label: string, match: Record<string, string> = {}): Record<string, number> {
    const out: Record<string, number> = {}
    for (const s of this.series(name, match)) {
      const k = s.labels[label] ?? ''
      if (s.value !== 0) out[k] = (out[k] ?? 0) + s.value
    }
    return out
  }
}

export const parseMetrics = (text: string): Metrics => new Metrics(text)
