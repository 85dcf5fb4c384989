import t from 'tap'
import type { RunSample } from '../src/bench/measure'
import { addRatios, formatSpread, formatTable, type RowReport, summarize } from '../src/bench/report'

function sample(msgsPerSec: number, over: Partial<RunSample> = {}): RunSample {
  return {
    msgsPerSec,
    p50Ms: 10,
    p99Ms: 40,
    cpuMsPerMsg: 1.5,
    peakMemBytes: 64 * 1024 * 1024,
    sent: 100,
    ok: 100,
    temp: 0,
    perm: 0,
    errors: 0,
    atSink: 100,
    genCpuMsPerMsg: 0.4,
    problems: [],
    ...over,
  }
}

function row(id: string, label: string, runs: RunSample[], available = true, reason?: string): RowReport {
  return {
    id,
    label,
    sizeBytes: 5120,
    available,
    ...(reason === undefined ? {} : { reason }),
    runs,
    summary: summarize(runs),
    vsPostfix: Number.NaN,
    vsDirect: Number.NaN,
  }
}

t.test('a spread prints the median and the min–max, one rep prints one number', async (t) => {
  t.equal(formatSpread({ median: 7300, min: 7100, max: 7420, n: 3 }, 0), '7,300 (7,100–7,420)')
  t.equal(formatSpread({ median: 16.5, min: 16.5, max: 16.5, n: 1 }, 1), '16.5')
  t.equal(formatSpread({ median: 1.954, min: 1.9, max: 2.01, n: 2 }, 2), '1.95 (1.90–2.01)')
  t.equal(formatSpread({ median: 64 * 1048576, min: 60 * 1048576, max: 70 * 1048576, n: 3 }, 0, 1048576), '64 (60–70)')
  t.equal(formatSpread({ median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }, 1), '—')
})

t.test('ratios compare each row with the Postfix and direct rows of the same size', async (t) => {
  const rows = [
    row('direct', 'direct', [sample(7000), sample(7300), sample(7600)]),
    row('postfix', 'Postfix', [sample(760)]),
    row('haraka', 'Haraka', [sample(380)]),
    row('mxgate', 'mxgate', [], false, 'bin/mxgate.js does not exist yet'),
  ]
  addRatios(rows)
  t.equal(rows[2]?.vsPostfix, 0.5)
  t.equal(rows[1]?.vsDirect.toFixed(3), (760 / 7300).toFixed(3))
  t.equal(rows[0]?.vsDirect, 1)
  t.ok(Number.isNaN(rows[3]?.vsPostfix ?? 0), 'an unmeasured row has no ratio')
})

t.test(
  'the table has one line per row, a dash where a value does not apply, and says why a row is missing',
  async (t) => {
    const rows = [
      row('direct', 'direct → smtp-sink', [sample(7300, { cpuMsPerMsg: Number.NaN, peakMemBytes: Number.NaN })]),
      row('postfix', 'Postfix relay', [sample(700, { p50Ms: 16 }), sample(760, { p50Ms: 17 }), sample(800)]),
      row('mxgate', 'mxgate inline', [], false, 'bin/mxgate.js does not exist yet'),
    ]
    addRatios(rows)
    const lines = formatTable(rows).split('\n')
    t.equal(lines.length, 2 + rows.length, 'header, rule, rows')
    const cells = (line: string | undefined): string[] =>
      (line ?? '')
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim())
    t.same(cells(lines[0]).slice(0, 3), ['path', 'size', 'msgs/s (min–max)'])
    t.same(cells(lines[2]), ['direct → smtp-sink', '5k', '7,300', '10.0', '40.0', '—', '—', '9.61×', '1.00×', ''])
    t.same(cells(lines[3]).slice(0, 4), ['Postfix relay', '5k', '760 (700–800)', '16.0 (10.0–17.0)'])
    t.same(cells(lines[4]).slice(2, 9), ['', '', '', '', '', '', ''], 'no numbers for a row that was not measured')
    t.equal(cells(lines[4])[9], 'not available: bin/mxgate.js does not exist yet')
    const widths = new Set(lines.map((l) => l.length))
    t.equal(widths.size, 1, 'every line is padded to the same width')
  },
)
